// Package jsonobj reads JSON objects member by member in one pass, for the worker's hot
// path: job envelopes and payloads, and upstream answers.
package jsonobj

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/go-json-experiment/json/jsontext"
)

// reader reads a JSON object member by member with jsontext (encoding/json/v2's
// syntactic layer): one pass that validates the whole text (nothing may follow the object)
// and hands out each member's value as a slice of the input, without copying it or going
// through reflection. It is the worker's hot path: every job is read this way once. Like
// encoding/json, it lets the last of duplicate names win and leaves invalid UTF-8 to the
// type's own checks.
type reader struct {
	in  bytes.Buffer
	dec jsontext.Decoder
}

var readers = sync.Pool{New: func() any { return new(reader) }}

var readOptions = []jsontext.Options{jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true)}

var errNotObject = errors.New("not a JSON object")

// Each calls f with the name and the raw value of every member of the JSON object
// data, in order. The values alias data. An error of f stops the walk and is returned.
func Each(data []byte, f func(name string, value []byte) error) error {
	r := readers.Get().(*reader)
	defer func() {
		r.in = bytes.Buffer{}
		r.dec.Reset(&r.in) // drop the reference to data before pooling
		readers.Put(r)
	}()
	r.in = *bytes.NewBuffer(data)
	d := &r.dec
	d.Reset(&r.in, readOptions...)
	if d.PeekKind() != '{' {
		if _, err := d.ReadValue(); err != nil {
			return err
		}
		return errNotObject
	}
	if _, err := d.ReadToken(); err != nil {
		return err
	}
	for d.PeekKind() != '}' {
		name, err := d.ReadValue()
		if err != nil {
			return err
		}
		v, err := d.ReadValue()
		if err != nil {
			return err
		}
		end := int(d.InputOffset())
		if err := f(Unquote(name), data[end-len(v):end]); err != nil {
			return err
		}
	}
	if _, err := d.ReadToken(); err != nil {
		return err
	}
	if _, err := d.ReadToken(); err != io.EOF {
		return fmt.Errorf("trailing data after the JSON object")
	}
	return nil
}

// Unquote returns the text of a valid JSON string, copying it out of the input.
func Unquote(v []byte) string {
	if len(v) >= 2 && bytes.IndexByte(v, '\\') < 0 {
		return string(v[1 : len(v)-1])
	}
	b, err := jsontext.AppendUnquote(nil, v)
	if err != nil {
		return ""
	}
	return string(b)
}

// OptString reads a member that is a JSON string or null (nil).
func OptString(name string, v []byte) (*string, error) {
	switch {
	case len(v) > 0 && v[0] == '"':
		s := Unquote(v)
		return &s, nil
	case string(v) == "null":
		return nil, nil
	}
	return nil, fmt.Errorf("%s must be a string", name)
}
