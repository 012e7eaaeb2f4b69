package api

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"golang.org/x/text/currency"
	"golang.org/x/text/language"

	"github.com/bazaarhq/bazaar/sql/store"
)

// bind decodes the JSON body into dst, refusing unknown fields, trailing
// data and wrong types. An empty body is accepted when optional is true
// (dst keeps its zero value).
func bind(c *gin.Context, dst any, optional bool) error {
	var body []byte
	if c.Request.Body != nil {
		b, err := io.ReadAll(c.Request.Body)
		if err != nil {
			return fmt.Errorf("read body: %w", err)
		}
		body = b
	}
	if len(bytes.TrimSpace(body)) == 0 {
		if optional {
			return nil
		}
		return withDetail(errMalformedJSON, "The request body is empty; send a JSON object.")
	}
	if mt, _, err := mime.ParseMediaType(c.GetHeader("Content-Type")); err != nil ||
		(mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
		return withDetail(errUnsupportedMediaType, "Send Content-Type: application/json.")
	}
	// encoding/json would replace invalid UTF-8 and lone surrogate escapes
	// with U+FFFD and store the mangled text as if the client sent it.
	if !utf8.Valid(body) {
		return withDetail(errMalformedJSON, "The request body is not valid UTF-8.")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return decodeError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return withDetail(errMalformedJSON, "The request body holds more than one JSON value.")
	}
	if loneSurrogate(body) {
		return withDetail(errMalformedJSON, "The request body holds a \\u escape of half a UTF-16 surrogate pair, which is no character.")
	}
	// encoding/json takes null for any field as "leave it as it is", so a
	// null where the spec allows none would pass as an absent field.
	var tree any
	tdec := json.NewDecoder(bytes.NewReader(body))
	tdec.UseNumber()
	if err := tdec.Decode(&tree); err != nil {
		return decodeError(err)
	}
	if tree == nil {
		return withDetail(errValidation, "The body must be a JSON object.", FieldError{Field: "(body)", Message: "must be a JSON object"})
	}
	if fields := nullFields(tree, reflect.TypeOf(dst), "", nil); len(fields) > 0 {
		slices.SortFunc(fields, func(a, b FieldError) int { return strings.Compare(a.Field, b.Field) })
		return invalid(fields...)
	}
	return nil
}

// nullFields lists the nulls of v, a decoded JSON value bound to type t,
// that stand for a field without the tag nullable:"true" (openapi.yaml's
// type [..., "null"]), an array item or a map value.
func nullFields(v any, t reflect.Type, path string, out []FieldError) []FieldError {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch v := v.(type) {
	case map[string]any:
		for name, fv := range v {
			p := name
			if path != "" {
				p = path + "." + name
			}
			var ft reflect.Type
			nullable := false
			switch t.Kind() {
			case reflect.Struct:
				f, ok := jsonField(t, name)
				if !ok {
					continue // unknown fields were refused by the decoder
				}
				ft, nullable = f.Type, f.Tag.Get("nullable") == "true"
			case reflect.Map:
				ft = t.Elem()
			default:
				continue
			}
			if fv == nil {
				if !nullable {
					out = append(out, FieldError{Field: p, Message: "must not be null"})
				}
				continue
			}
			out = nullFields(fv, ft, p, out)
		}
	case []any:
		if t.Kind() != reflect.Slice && t.Kind() != reflect.Array {
			return out
		}
		for i, ev := range v {
			p := fmt.Sprintf("%s[%d]", path, i)
			if ev == nil {
				out = append(out, FieldError{Field: p, Message: "must not be null"})
				continue
			}
			out = nullFields(ev, t.Elem(), p, out)
		}
	}
	return out
}

// jsonField finds the struct field encoding/json decodes the key name
// into: the exact name first, then one equal ignoring case.
func jsonField(t reflect.Type, name string) (reflect.StructField, bool) {
	var folded *reflect.StructField
	for f := range t.Fields() {
		if !f.IsExported() {
			continue
		}
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if tag == "-" {
			continue
		}
		if tag == "" {
			tag = f.Name
		}
		if tag == name {
			return f, true
		}
		if folded == nil && strings.EqualFold(tag, name) {
			folded = &f
		}
	}
	if folded != nil {
		return *folded, true
	}
	return reflect.StructField{}, false
}

// loneSurrogate reports whether a JSON text (valid, so its backslashes
// all start escapes) holds a \u escape of one half of a UTF-16
// surrogate pair without the other.
func loneSurrogate(body []byte) bool {
	for i := 0; i < len(body); i++ {
		if body[i] != '\\' || i+1 >= len(body) {
			continue
		}
		if body[i+1] != 'u' {
			i++ // a two-character escape such as \\ or \"
			continue
		}
		r, ok := hexRune(body[i+2:])
		if !ok {
			return true
		}
		switch {
		case r >= 0xDC00 && r <= 0xDFFF:
			return true // a low half first
		case r >= 0xD800 && r <= 0xDBFF:
			rest := body[i+6:]
			if len(rest) < 6 || rest[0] != '\\' || rest[1] != 'u' {
				return true
			}
			lo, ok := hexRune(rest[2:])
			if !ok || lo < 0xDC00 || lo > 0xDFFF {
				return true
			}
			i += 11
		default:
			i += 5
		}
	}
	return false
}

func hexRune(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	n, err := strconv.ParseUint(string(b[:4]), 16, 32)
	return rune(n), err == nil
}

func decodeError(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return withDetail(errMalformedJSON, fmt.Sprintf("Invalid JSON at byte %d.", syn.Offset))
	case errors.Is(err, io.ErrUnexpectedEOF):
		return withDetail(errMalformedJSON, "The JSON body ends too early.")
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			return withDetail(errValidation, "The body must be a JSON object.", FieldError{Field: "(body)", Message: "must be a JSON object"})
		}
		return invalid(FieldError{Field: field, Message: "must be " + jsonKind(typ.Type.Kind().String())})
	}
	// encoding/json reports unknown fields with an untyped error whose text
	// is its documented form `json: unknown field "name"`.
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return invalid(FieldError{Field: strings.Trim(name, `"`), Message: "is not a known field"})
	}
	return withDetail(errMalformedJSON, "The request body could not be decoded.")
}

func jsonKind(goKind string) string {
	switch goKind {
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		return "an integer"
	case "float32", "float64":
		return "a number"
	case "bool":
		return "true or false"
	case "string":
		return "a string"
	case "slice", "array":
		return "an array"
	case "struct", "map":
		return "an object"
	}
	return "of another type"
}

// checker collects field errors while a handler validates its input.
type checker struct{ errs []FieldError }

func (k *checker) add(field, message string) { k.errs = append(k.errs, FieldError{field, message}) }

// err returns the 422 validation problem, or nil when every field passed.
func (k *checker) err() error {
	if len(k.errs) == 0 {
		return nil
	}
	return invalid(k.errs...)
}

// text checks a free-text field: valid UTF-8, no control characters, at
// most max bytes and, when required, not blank.
func (k *checker) text(field, v string, required bool, max int) {
	switch {
	case required && strings.TrimSpace(v) == "":
		k.add(field, "is required")
	case len(v) > max:
		k.add(field, fmt.Sprintf("must be at most %d bytes", max))
	case !utf8.ValidString(v) || strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 && r != '\n' && r != '\t' }):
		k.add(field, "must be printable text")
	}
}

func (k *checker) email(field, v string) {
	if v == "" {
		k.add(field, "is required")
		return
	}
	a, err := mail.ParseAddress(v)
	if err != nil || a.Address != v || len(v) > 254 {
		k.add(field, "must be an email address such as name@example.com")
	}
}

// currency checks an ISO 4217 code in upper case.
func (k *checker) currency(field, v string) {
	if v == "" {
		k.add(field, "is required")
		return
	}
	if _, err := currency.ParseISO(v); err != nil || len(v) != 3 || strings.ToUpper(v) != v {
		k.add(field, "must be an ISO 4217 currency code such as EUR")
	}
}

// country checks an ISO 3166-1 alpha-2 code in upper case ("" allowed).
func (k *checker) country(field, v string) {
	if v == "" {
		return
	}
	r, err := language.ParseRegion(v)
	if err != nil || len(v) != 2 || r.String() != v || !r.IsCountry() {
		k.add(field, "must be an ISO 3166-1 alpha-2 country code such as DE")
	}
}

// id checks a UUID field and returns it, nil when it is malformed.
func (k *checker) id(field, v string) *uuid.UUID {
	id, err := uuid.Parse(v)
	if err != nil || len(v) != 36 {
		k.add(field, "must be a UUID")
		return nil
	}
	return &id
}

// token checks an opaque token: 1 to max printable ASCII characters
// without spaces.
func (k *checker) token(field, v string, max int) {
	switch {
	case v == "":
		k.add(field, "is required")
	case len(v) > max || !validRequestID(v):
		k.add(field, fmt.Sprintf("must be 1 to %d printable ASCII characters without spaces", max))
	}
}

// pathID parses a UUID path parameter.
func pathID(c *gin.Context, name string) (uuid.UUID, error) {
	id, err := uuid.Parse(c.Param(name))
	if err != nil || len(c.Param(name)) != 36 {
		return uuid.Nil, badParam(name, "must be a UUID")
	}
	return id, nil
}

// queryID parses an optional UUID query parameter.
func queryID(c *gin.Context, name string) (*uuid.UUID, error) {
	v, ok := c.GetQuery(name)
	if !ok {
		return nil, nil
	}
	id, err := uuid.Parse(v)
	if err != nil || len(v) != 36 {
		return nil, badParam(name, "must be a UUID")
	}
	return &id, nil
}

// MaxPageLimit caps the limit query parameter of lists.
const MaxPageLimit = 200

// page reads the limit and cursor query parameters of a list.
func page(c *gin.Context) (store.Page, error) {
	p := store.Page{Limit: store.DefaultPageLimit}
	if v, ok := c.GetQuery("limit"); ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxPageLimit {
			return p, badParam("limit", fmt.Sprintf("must be a whole number from 1 to %d", MaxPageLimit))
		}
		p.Limit = n
	}
	if v, ok := c.GetQuery("cursor"); ok {
		cur, err := decodeCursor(v)
		if err != nil {
			return p, badParam("cursor", "must be a next_cursor value returned by this list")
		}
		p.After = &cur
	}
	return p, nil
}

// Cursors are opaque to clients: 8 bytes of microseconds since the epoch
// (PostgreSQL's timestamp precision, so nothing is lost) and the 16 bytes
// of the row id, base64url without padding.
func encodeCursor(cur *store.Cursor) *string {
	if cur == nil {
		return nil
	}
	b := make([]byte, 24)
	binary.BigEndian.PutUint64(b, uint64(cur.CreatedAt.UnixMicro()))
	copy(b[8:], cur.ID[:])
	s := base64.RawURLEncoding.EncodeToString(b)
	return &s
}

// Cursor times outside these bounds were never a row's created_at. The
// 8 bytes reach ±292,000 years and PostgreSQL refuses timestamps before
// 4713 BC or after 294276 AD (the query fails with "timestamp out of
// range"), so a crafted cursor must be refused here, not by the database.
var (
	minCursorTime = time.Date(1, time.January, 1, 0, 0, 0, 0, time.UTC)
	maxCursorTime = time.Date(9999, time.December, 31, 23, 59, 59, 999999000, time.UTC)
)

// decodeCursor is the one decoder of list cursors: anything it accepts is
// a value the list queries can run with.
func decodeCursor(s string) (store.Cursor, error) {
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil || len(b) != 24 {
		return store.Cursor{}, errors.New("malformed cursor")
	}
	at := time.UnixMicro(int64(binary.BigEndian.Uint64(b))).UTC()
	if at.Before(minCursorTime) || at.After(maxCursorTime) {
		return store.Cursor{}, errors.New("cursor time out of range")
	}
	id, err := uuid.FromBytes(b[8:])
	if err != nil {
		return store.Cursor{}, err
	}
	return store.Cursor{CreatedAt: at, ID: id}, nil
}
