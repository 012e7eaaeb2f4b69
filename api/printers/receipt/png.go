package receipt

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"

	"golang.org/x/image/font"
	"golang.org/x/image/font/gofont/gomono"
	"golang.org/x/image/font/gofont/gomonobold"
	"golang.org/x/image/font/opentype"
	"golang.org/x/image/math/fixed"
)

// Dot widths of common paper: 80 mm and 58 mm rolls at 203 dpi.
const (
	Dots80mm = 576
	Dots58mm = 384
)

var (
	monoFont = mustParse(gomono.TTF)
	boldFont = mustParse(gomonobold.TTF)
)

func mustParse(ttf []byte) *opentype.Font {
	f, err := opentype.Parse(ttf)
	if err != nil {
		panic(fmt.Sprintf("receipt: embedded Go font: %v", err))
	}
	return f
}

// PNG renders a receipt as a black and white PNG dots wide, the Go Mono
// font sized so the layout's columns fill the width (20 px, 12 dots a
// character, at 576 dots). Thermal printers print one dot per pixel, so
// the image is 1 bit deep with no grey to dither.
func PNG(r Receipt, dots int) ([]byte, error) {
	if dots < 96 {
		return nil, fmt.Errorf("render receipt: width %d dots is too narrow", dots)
	}
	// Go Mono's advance is 0.6 em: Columns characters take dots at this size.
	size := float64(dots) / Columns / 0.6
	lineHeight := int(size*1.25 + 0.5)
	margin := lineHeight / 2
	lines := Layout(r)
	height := 2*margin + lineHeight*(len(lines)+1)

	faces := map[Style]font.Face{}
	for style, f := range map[Style]*opentype.Font{Plain: monoFont, Heading: boldFont} {
		face, err := opentype.NewFace(f, &opentype.FaceOptions{Size: size, DPI: 72, Hinting: font.HintingFull})
		if err != nil {
			return nil, fmt.Errorf("render receipt: %w", err)
		}
		defer face.Close()
		faces[style] = face
	}

	gray := image.NewGray(image.Rect(0, 0, dots, height))
	draw.Draw(gray, gray.Bounds(), image.White, image.Point{}, draw.Src)
	d := font.Drawer{Dst: gray, Src: image.Black}
	for i, l := range lines {
		d.Face = faces[l.Style]
		ascent := d.Face.Metrics().Ascent.Ceil()
		d.Dot = fixed.P(0, margin+i*lineHeight+ascent)
		d.DrawString(l.Text)
	}

	out := image.NewPaletted(gray.Bounds(), color.Palette{color.White, color.Black})
	for y := range height {
		for x := range dots {
			if gray.GrayAt(x, y).Y < 128 {
				out.SetColorIndex(x, y, 1)
			}
		}
	}
	var b bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestCompression}
	if err := enc.Encode(&b, out); err != nil {
		return nil, fmt.Errorf("render receipt: %w", err)
	}
	return b.Bytes(), nil
}
