package config

import (
	"reflect"
	"strings"
)

// Diff returns the dotted keys ("node_id", "networks.a.interface",
// "timing.misses", "plugins") whose values differ between a and b, in the
// order of the schema. Lists and the plugin chain compare as a whole.
func Diff(a, b *Config) []string {
	var keys []string
	diffStruct(reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem(), "", &keys)
	for i := range a.Networks {
		diffStruct(reflect.ValueOf(a.Networks[i]), reflect.ValueOf(b.Networks[i]), "networks."+a.Networks[i].Name+".", &keys)
	}
	return keys
}

func diffStruct(a, b reflect.Value, prefix string, keys *[]string) {
	t := a.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("toml")
		if tag == "" || tag == "-" || !f.IsExported() {
			continue
		}
		tag, _, _ = strings.Cut(tag, ",")
		fa, fb := a.Field(i), b.Field(i)
		if f.Type.Kind() == reflect.Struct && f.Type.PkgPath() == t.PkgPath() {
			diffStruct(fa, fb, prefix+tag+".", keys)
			continue
		}
		if !reflect.DeepEqual(fa.Interface(), fb.Interface()) {
			*keys = append(*keys, prefix+tag)
		}
	}
}
