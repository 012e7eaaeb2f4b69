// Package docs renders the API reference pages: GET /docs, the OpenAPI
// document through the vendored Redoc bundle (Redoc 3.0.1, MIT, see
// README.md and LICENSE.redoc) plus the problem types, and GET
// /docs/events, the AsyncAPI catalogue's channels and messages as a plain
// server-rendered page. Everything is embedded: the pages load nothing
// from another host.
//
// It imports nothing of Bazaar's; the api package passes it the problem
// table and the documents.
package docs

import (
	"embed"
	"fmt"
	"html/template"
	"io"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

// RedocVersion is the version of the vendored redoc.standalone.js.
const RedocVersion = "3.0.1"

//go:embed redoc.standalone.js
var redoc []byte

//go:embed *.tmpl
var tmplFS embed.FS

var tmpl = template.Must(template.ParseFS(tmplFS, "*.tmpl"))

// Redoc returns the vendored Redoc standalone bundle, an ES module.
func Redoc() []byte { return redoc }

// Problem is one problem type of the API's error answers.
type Problem struct {
	URI    string
	Slug   string
	Title  string
	Status int
}

// Reference writes the /docs page: Redoc rendering specURL, bundleURL
// being where the Redoc bundle is served, and the problem types.
func Reference(w io.Writer, title, specURL, bundleURL string, problems []Problem) error {
	return tmpl.ExecuteTemplate(w, "reference.html.tmpl", map[string]any{
		"Title": title, "SpecURL": specURL, "BundleURL": bundleURL, "Problems": problems,
	})
}

type asyncDoc struct {
	Info struct {
		Title       string `json:"title"`
		Version     string `json:"version"`
		Description string `json:"description"`
	} `json:"info"`
	Channels map[string]struct {
		Address     string `json:"address"`
		Title       string `json:"title"`
		Description string `json:"description"`
		Messages    map[string]struct {
			Ref string `json:"$ref"`
		} `json:"messages"`
	} `json:"channels"`
	Components struct {
		Messages map[string]asyncMessage `json:"messages"`
	} `json:"components"`
}

type asyncMessage struct {
	Name        string   `json:"name"`
	Summary     string   `json:"summary"`
	Description string   `json:"description"`
	DataSchemas []string `json:"x-dataschemas"`
}

type channelView struct {
	ID, Address, Title, Description string
	Messages                        []asyncMessage
}

// Events writes the /docs/events page from an AsyncAPI 3.0 document: each
// channel, in name order, with its messages in name order.
func Events(w io.Writer, asyncapi []byte, specURL string) error {
	var doc asyncDoc
	if err := yaml.Unmarshal(asyncapi, &doc); err != nil {
		return fmt.Errorf("parse asyncapi document: %w", err)
	}
	channels := make([]channelView, 0, len(doc.Channels))
	for id, ch := range doc.Channels {
		v := channelView{ID: id, Address: ch.Address, Title: ch.Title, Description: ch.Description}
		for name, ref := range ch.Messages {
			m, ok := doc.Components.Messages[strings.TrimPrefix(ref.Ref, "#/components/messages/")]
			if !ok {
				m = asyncMessage{Name: name}
			}
			if m.Name == "" {
				m.Name = name
			}
			v.Messages = append(v.Messages, m)
		}
		sort.Slice(v.Messages, func(i, j int) bool { return v.Messages[i].Name < v.Messages[j].Name })
		channels = append(channels, v)
	}
	sort.Slice(channels, func(i, j int) bool { return channels[i].ID < channels[j].ID })
	return tmpl.ExecuteTemplate(w, "events.html.tmpl", map[string]any{
		"Title": doc.Info.Title, "Version": doc.Info.Version, "Description": doc.Info.Description,
		"SpecURL": specURL, "Channels": channels,
	})
}
