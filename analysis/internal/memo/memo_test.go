package memo

import (
	"sync"
	"testing"
)

// A Table answers what was put for a key and nothing for another, from
// many goroutines at once, however their puts collide.
func TestTableAnswersWhatWasPut(t *testing.T) {
	tab := New[[2]uint64, [2]uint64](64) // small: collisions, and writes meeting reads
	if _, ok := tab.Get([2]uint64{}); ok {
		t.Fatal("an empty table answered, for the zero key")
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range uint64(50000) {
				k := [2]uint64{i % 500, uint64(g)}
				want := [2]uint64{k[0] * k[0], k[0] + k[1]}
				if v, ok := tab.Get(k); ok && v != want {
					t.Errorf("%v: %v, want %v", k, v, want)
					return
				}
				tab.Put(k, want)
			}
		}()
	}
	wg.Wait()
	tab.Put([2]uint64{7, 7}, [2]uint64{1, 2})
	if v, ok := tab.Get([2]uint64{7, 7}); !ok || v != [2]uint64{1, 2} {
		t.Errorf("got %v, %v after a put", v, ok)
	}
	if _, ok := tab.Get([2]uint64{7, 9}); ok {
		t.Error("a key never put answered")
	}
	z := 0.0
	if Bits(z) == Bits(-z) || Float(Bits(-z)) != 0 {
		t.Error("0 and -0 have the same bits")
	}
}
