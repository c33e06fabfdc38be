package state

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// fileVersion is the state file's format version.
const fileVersion = 1

// maxStateFile bounds the state file read at startup.
const maxStateFile = 256 << 20

// stateFile is the on-disk form of a Memory's families, revocations and
// not-before records. It holds token ids and usernames only, never token
// values.
type stateFile struct {
	Version   int                      `json:"version"`
	Families  map[string]fileFamily    `json:"families"`
	Revoked   map[string]time.Time     `json:"revoked"`
	NotBefore map[string]fileNotBefore `json:"not_before,omitempty"`
	// Sessions are browser sessions by the digest of their id; never the
	// id itself.
	Sessions map[string]Session `json:"sessions,omitempty"`
}

// fileNotBefore is one subject's not-before record in the state file.
type fileNotBefore struct {
	At  time.Time `json:"at"`
	Exp time.Time `json:"exp"`
}

// fileFamily is one family in the state file.
type fileFamily struct {
	Current string    `json:"current,omitempty"`
	Exp     time.Time `json:"exp"`
	Revoked bool      `json:"revoked,omitempty"`
}

// load reads m.path into m. A missing file is an empty state; anything else
// that cannot be read exactly is an error naming the file.
func (m *Memory) load() error {
	b, err := os.ReadFile(m.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("state: load %s: %w", m.path, err)
	}
	if len(b) > maxStateFile {
		return fmt.Errorf("state: load %s: file larger than %d bytes", m.path, maxStateFile)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var f stateFile
	if err := dec.Decode(&f); err != nil {
		return fmt.Errorf("state: load %s: %w", m.path, err)
	}
	if dec.More() {
		return fmt.Errorf("state: load %s: trailing data after state", m.path)
	}
	if f.Version != fileVersion {
		return fmt.Errorf("state: load %s: unsupported version %d", m.path, f.Version)
	}
	now := m.now()
	for k, ff := range f.Families {
		if k == "" || (!ff.Revoked && ff.Current == "") {
			return fmt.Errorf("state: load %s: invalid family entry", m.path)
		}
		if ff.Exp.After(now) {
			m.families[k] = &family{current: ff.Current, exp: ff.Exp, revoked: ff.Revoked}
		}
	}
	for k, exp := range f.Revoked {
		if k == "" {
			return fmt.Errorf("state: load %s: invalid revocation entry", m.path)
		}
		if exp.After(now) {
			m.revoked[k] = exp
		}
	}
	for k, nb := range f.NotBefore {
		if k == "" || nb.At.IsZero() || nb.Exp.Before(nb.At) {
			return fmt.Errorf("state: load %s: invalid not-before entry", m.path)
		}
		if nb.Exp.After(now) {
			m.setNotBefore(k, notBefore{at: nb.At, exp: nb.Exp})
		}
	}
	for k, s := range f.Sessions {
		if err := checkSession(k, s); err != nil {
			return fmt.Errorf("state: load %s: invalid session entry", m.path)
		}
		if s.Expires.After(now) {
			m.putSession(k, s)
		}
	}
	return nil
}

// flush writes the current state to m.path if it has changed. Writes are
// serialized and each takes its snapshot after the previous write, so the
// file only ever moves forward.
func (m *Memory) flush() error {
	m.writeMu.Lock()
	defer m.writeMu.Unlock()

	m.mu.Lock()
	if !m.dirty {
		m.mu.Unlock()
		return nil
	}
	f := stateFile{
		Version:  fileVersion,
		Families: make(map[string]fileFamily, len(m.families)),
		Revoked:  make(map[string]time.Time, len(m.revoked)),
	}
	for k, v := range m.families {
		f.Families[k] = fileFamily{Current: v.current, Exp: v.exp, Revoked: v.revoked}
	}
	for k, v := range m.revoked {
		f.Revoked[k] = v
	}
	if len(m.notBefore) > 0 {
		f.NotBefore = make(map[string]fileNotBefore, len(m.notBefore))
		for k, v := range m.notBefore {
			f.NotBefore[k] = fileNotBefore{At: v.at, Exp: v.exp}
		}
	}
	if len(m.sessions) > 0 {
		f.Sessions = make(map[string]Session, len(m.sessions))
		for k, v := range m.sessions {
			f.Sessions[k] = *v
		}
	}
	m.dirty = false
	m.mu.Unlock()

	err := writeFileAtomic(m.path, f)

	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		m.dirty = true
		m.flushErr = err
		return unavailable("persist", err)
	}
	m.flushErr = nil
	return nil
}

// writeFileAtomic writes v as JSON to path through a temporary file in the
// same directory and a rename, so a crash leaves either the old or the new
// file, never a torn one. The file is created 0600: it lists token ids.
func writeFileAtomic(path string, v any) (err error) {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("state: write %s: %w", path, err)
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return fmt.Errorf("state: write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			_ = os.Remove(tmp.Name())
		}
	}()
	if err = tmp.Chmod(0o600); err == nil {
		if _, err = tmp.Write(b); err == nil {
			err = tmp.Sync()
		}
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("state: write %s: %w", path, err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("state: write %s: %w", path, err)
	}
	if d, derr := os.Open(dir); derr == nil {
		_ = d.Sync() // make the rename durable; best effort
		_ = d.Close()
	}
	return nil
}
