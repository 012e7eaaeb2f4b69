package receipt_test

import (
	"bytes"
	"encoding/xml"
	"flag"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/api/printers/receipt"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func sample() receipt.Receipt {
	at := time.Date(2026, 11, 30, 9, 41, 0, 0, time.UTC)
	pickup := at.Add(26 * time.Hour)
	return receipt.Receipt{
		OrderID:     "0196f1c2-7d1e-7a3b-9c4d-5e6f70819203",
		PlacedAt:    at,
		ScheduledAt: &pickup,
		Currency:    "EUR",
		Items: []receipt.Item{
			{SKU: "MUG-BLUE", Name: "Mug, blue <glazed> & boxed", Quantity: 2, LineTotalMinor: 2500},
			{SKU: "TEA-EARL-GREY-250G-LOOSE-LEAF", Name: "Earl Grey, loose leaf, 250 g tin with a very long name", Quantity: 1, LineTotalMinor: 899},
		},
		SubtotalMinor: 3399,
		TotalMinor:    3399,
	}
}

// golden compares got with testdata/name, rewriting it under -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		require.NoError(t, os.WriteFile(path, got, 0o600))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, string(want), string(got), "%s differs; run go test -update after checking the new rendering", name)
}

func TestText(t *testing.T) {
	t.Parallel()
	got := receipt.Text(sample())
	golden(t, "receipt.txt", []byte(got))
	for _, l := range strings.Split(strings.TrimRight(got, "\n"), "\n") {
		require.LessOrEqual(t, len([]rune(l)), receipt.Columns, "line %q", l)
	}
}

func TestEPOSPrint(t *testing.T) {
	t.Parallel()
	got := receipt.EPOSPrint(sample())
	golden(t, "receipt.xml", []byte(got))
	// Well-formed XML in the ePOS-Print namespace whose text is the
	// receipt's, escapes and all.
	var doc struct {
		XMLName xml.Name
		Texts   []string `xml:"text"`
		Cut     struct {
			Type string `xml:"type,attr"`
		} `xml:"cut"`
	}
	require.NoError(t, xml.Unmarshal([]byte(got), &doc))
	require.Equal(t, xml.Name{Space: receipt.EPOSNamespace, Local: "epos-print"}, doc.XMLName)
	require.Equal(t, "feed", doc.Cut.Type)
	require.Equal(t, strings.TrimSuffix(receipt.Text(sample()), "\n"), strings.Join(doc.Texts, ""))
}

func TestPNG(t *testing.T) {
	t.Parallel()
	for _, dots := range []int{receipt.Dots80mm, receipt.Dots58mm} {
		got, err := receipt.PNG(sample(), dots)
		require.NoError(t, err)
		img, err := png.Decode(bytes.NewReader(got))
		require.NoError(t, err)
		require.Equal(t, dots, img.Bounds().Dx(), "the printer's width")
		require.Greater(t, img.Bounds().Dy(), 20*len(receipt.Layout(sample()))*dots/receipt.Dots80mm/2)
		inked := 0
		for y := range img.Bounds().Dy() {
			for x := range dots {
				if c, _, _, _ := img.At(x, y).RGBA(); c == 0 {
					inked++
				}
			}
		}
		require.Greater(t, inked, 1000, "text is drawn")
		_, isPaletted := img.(*image.Paletted)
		require.True(t, isPaletted, "black and white")
		if dots == receipt.Dots80mm {
			golden(t, "receipt-576.png", got)
		}
	}
	_, err := receipt.PNG(sample(), 10)
	require.Error(t, err)
}
