package jsonobj

import (
	"strings"
	"testing"
)

func TestEach(t *testing.T) {
	data := []byte(` {"a":1, "b" : {"x":[1,"]"]}, "c\u0064":"v\"", "a":null} `)
	var got []string
	if err := Each(data, func(name string, v []byte) error {
		got = append(got, name+"="+string(v))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := `a=1|b={"x":[1,"]"]}|cd="v\""|a=null` // values are the input's bytes, in order
	if strings.Join(got, "|") != want {
		t.Fatalf("members %q, want %q", strings.Join(got, "|"), want)
	}
	for _, bad := range []string{``, `[]`, `"s"`, `{"a":1}}`, `{"a":1} {}`, `{"a":}`, `{"a":1,}`, `{'a':1}`} {
		if err := Each([]byte(bad), func(string, []byte) error { return nil }); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestOptString(t *testing.T) {
	if s, err := OptString("f", []byte(`"a\u00e9"`)); err != nil || *s != "aé" {
		t.Errorf("got %v, %v", s, err)
	}
	if s, err := OptString("f", []byte(`null`)); err != nil || s != nil {
		t.Errorf("null: got %v, %v", s, err)
	}
	if _, err := OptString("f", []byte(`1`)); err == nil || err.Error() != "f must be a string" {
		t.Errorf("number: %v", err)
	}
}
