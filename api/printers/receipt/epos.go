package receipt

import (
	"bytes"
	"encoding/xml"
)

// EPOSNamespace is the ePOS-Print XML namespace.
const EPOSNamespace = "http://www.epson-pos.com/schemas/2011/03/epos-print"

// EPOSPrint renders a receipt as an ePOS-Print <epos-print> document: a
// <text> element per layout line (headings between em="true" and
// em="false"), three fed lines and a feed cut. Text is escaped as XML
// character data; the line feed ends each line as "&#10;".
func EPOSPrint(r Receipt) string {
	var b bytes.Buffer
	b.WriteString(`<epos-print xmlns="` + EPOSNamespace + `">`)
	b.WriteString(`<text lang="en"/>`)
	for _, l := range Layout(r) {
		if l.Style == Heading {
			b.WriteString(`<text em="true"/>`)
		}
		b.WriteString(`<text>`)
		_ = xml.EscapeText(&b, []byte(l.Text))
		b.WriteString(`&#10;</text>`)
		if l.Style == Heading {
			b.WriteString(`<text em="false"/>`)
		}
	}
	b.WriteString(`<feed line="3"/><cut type="feed"/></epos-print>`)
	return b.String()
}
