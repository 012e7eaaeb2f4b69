package main

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// printedKeep is how many printed order ids the state remembers. Past the
// cursor no order comes back, so the set only has to cover the orders an
// unfinished event (printed, not yet past the cursor) may repeat.
const printedKeep = 10000

// state is what the printer keeps on disk: the id of the last event fully
// handled (printed, recorded, acknowledged) and the orders it printed.
// Every change is fsynced before the printer moves on, so after a crash it
// resumes after the last handled event and skips orders it had printed.
type state struct {
	dir     string
	cursor  string
	printed map[string]bool
	order   []string // printed ids, oldest first
	log     *os.File // append-only printed-ids file
}

func openState(dir string) (*state, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	s := &state{dir: dir, printed: map[string]bool{}}
	b, err := os.ReadFile(filepath.Join(dir, "cursor"))
	switch {
	case err == nil:
		s.cursor = strings.TrimSpace(string(b))
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("read cursor: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "printed"), os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open printed orders: %w", err)
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// A torn last line (crash mid-write) is not a whole id; skip it.
		if id := strings.TrimSpace(sc.Text()); len(id) == 36 && !s.printed[id] {
			s.printed[id] = true
			s.order = append(s.order, id)
		}
	}
	if err := sc.Err(); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("read printed orders: %w", err)
	}
	s.log = f
	if len(s.order) > 2*printedKeep {
		if err := s.compact(); err != nil {
			_ = f.Close()
			return nil, err
		}
	}
	return s, nil
}

func (s *state) close() error { return s.log.Close() }

func (s *state) wasPrinted(orderID string) bool { return s.printed[orderID] }

// markPrinted records an order as printed, durably.
func (s *state) markPrinted(orderID string) error {
	if s.printed[orderID] {
		return nil
	}
	if _, err := s.log.WriteString(orderID + "\n"); err != nil {
		return fmt.Errorf("record printed order: %w", err)
	}
	if err := s.log.Sync(); err != nil {
		return fmt.Errorf("record printed order: %w", err)
	}
	s.printed[orderID] = true
	s.order = append(s.order, orderID)
	if len(s.order) > 2*printedKeep {
		return s.compact()
	}
	return nil
}

// compact rewrites the printed-ids file with the newest printedKeep ids.
func (s *state) compact() error {
	keep := s.order[len(s.order)-printedKeep:]
	var b strings.Builder
	for _, id := range keep {
		b.WriteString(id + "\n")
	}
	path := filepath.Join(s.dir, "printed")
	if err := writeFileSync(path, []byte(b.String())); err != nil {
		return fmt.Errorf("compact printed orders: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("compact printed orders: %w", err)
	}
	_ = s.log.Close()
	s.log = f
	s.order = append([]string(nil), keep...)
	s.printed = make(map[string]bool, len(keep))
	for _, id := range keep {
		s.printed[id] = true
	}
	return nil
}

// saveCursor records the id of the last handled event, durably.
func (s *state) saveCursor(id string) error {
	if id == "" || id == s.cursor {
		return nil
	}
	if err := writeFileSync(filepath.Join(s.dir, "cursor"), []byte(id+"\n")); err != nil {
		return fmt.Errorf("save cursor: %w", err)
	}
	s.cursor = id
	return nil
}

// writeFileSync replaces path atomically: a temporary file, fsync, rename,
// then fsync of the directory so the rename itself survives a power cut.
func writeFileSync(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
