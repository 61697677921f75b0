package v1alpha1

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestDeepCopySharesNothing fills every field of a status (reflectively,
// so a field added later is covered too), copies it, scribbles over every
// reachable value of the copy, and checks the original did not change.
func TestDeepCopySharesNothing(t *testing.T) {
	var orig FlightStatus
	fill(reflect.ValueOf(&orig).Elem(), 1)
	before, err := json.Marshal(orig)
	if err != nil {
		t.Fatal(err)
	}
	cp := orig.DeepCopy()
	if diff := cmp.Diff(&orig, cp); diff != "" {
		t.Fatalf("copy differs (-orig +copy):\n%s", diff)
	}
	fill(reflect.ValueOf(cp).Elem(), 7)
	after, _ := json.Marshal(orig)
	if string(before) != string(after) {
		t.Errorf("changing the copy changed the original:\nbefore %s\nafter  %s", before, after)
	}
}

var timeType = reflect.TypeOf(time.Time{})
var metaTimeType = reflect.TypeOf(metav1.Time{})

// fill sets every settable value under v to something derived from seed,
// writing through existing pointers, slices and maps (so that shared
// memory shows) and allocating them where nil.
func fill(v reflect.Value, seed int) {
	switch v.Type() {
	case timeType, metaTimeType:
		t := time.Unix(int64(1_800_000_000+seed), 0).UTC()
		if v.Type() == timeType {
			v.Set(reflect.ValueOf(t))
		} else {
			v.Set(reflect.ValueOf(metav1.NewTime(t)))
		}
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		fill(v.Elem(), seed)
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i), seed+i)
			}
		}
	case reflect.Slice:
		if v.Len() == 0 {
			v.Set(reflect.MakeSlice(v.Type(), 2, 2))
		}
		for i := range v.Len() {
			fill(v.Index(i), seed+i)
		}
	case reflect.Map:
		if v.IsNil() {
			v.Set(reflect.MakeMap(v.Type()))
			k := reflect.New(v.Type().Key()).Elem()
			fill(k, seed)
			v.SetMapIndex(k, reflect.Zero(v.Type().Elem()))
		}
		for _, k := range v.MapKeys() {
			e := reflect.New(v.Type().Elem()).Elem()
			fill(e, seed)
			v.SetMapIndex(k, e)
		}
	case reflect.String:
		v.SetString(string(rune('a'+seed%26)) + "x")
	case reflect.Bool:
		v.SetBool(seed%2 == 1)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(int64(seed))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(uint64(seed))
	case reflect.Float32, reflect.Float64:
		v.SetFloat(float64(seed) + 0.5)
	}
}
