package api_test

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fledgehq/fledge/rollout/api/apitest"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/rollout/rolloutpb"
)

// BenchmarkWatchFanOut: 100 clients, each on its own gRPC connection
// (TLS over loopback TCP, through the Authorizer), watch a namespace of 50
// Flights while the Backend publishes changes, one at a time or in bursts
// of 50. It reports the delay from a change being published to the last
// watcher receiving it (p50, p99) and the heap in use with every watcher
// connected and idle. It asserts nothing about speed.
func BenchmarkWatchFanOut(b *testing.B) {
	for _, burst := range []int{1, 50} {
		b.Run(fmt.Sprintf("watchers=100/flights=50/burst=%d", burst), func(b *testing.B) {
			benchmarkFanOut(b, 100, 50, burst)
		})
	}
}

type published struct {
	at        time.Time
	lastAt    time.Time // written by the last watcher to receive it, before done
	remaining atomic.Int32
	done      chan struct{}
}

func benchmarkFanOut(b *testing.B, watchers, flights, burst int) {
	backend := apitest.NewBackend(0)
	name := func(i int) string { return fmt.Sprintf("app-%02d", i%flights) }
	for i := range flights {
		backend.Put(apitest.NewFlight("prod", name(i), progressing()), nil)
	}
	// Default buffers (256 events per watcher): a burst of 50 fits.
	srv := apitest.Start(b, apitest.Options{Backend: backend})

	changes := make([]*published, b.N)
	for i := range changes {
		changes[i] = &published{done: make(chan struct{})}
		changes[i].remaining.Store(int32(watchers))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var ready, stopped sync.WaitGroup
	errs := make(chan error, watchers)
	for range watchers {
		client := rolloutpb.NewRolloutsClient(srv.Dial(b))
		ready.Add(1)
		stopped.Add(1)
		go func() {
			defer stopped.Done()
			stream, err := client.Watch(ctx, &rolloutpb.WatchRequest{Namespace: "prod"})
			if err != nil {
				errs <- err
				ready.Done()
				return
			}
			synced := false
			for {
				ev, err := stream.Recv()
				if err != nil {
					if !synced {
						ready.Done()
					}
					if ctx.Err() == nil {
						errs <- err
					}
					return
				}
				if ev.GetType() == rolloutpb.WatchEvent_TYPE_SYNCED {
					synced = true
					ready.Done()
					continue
				}
				seq, err := strconv.Atoi(ev.GetFlight().GetMessage())
				if err != nil || ev.GetType() != rolloutpb.WatchEvent_TYPE_MODIFIED {
					continue
				}
				c := changes[seq]
				if c.remaining.Add(-1) == 0 {
					c.lastAt = time.Now()
					close(c.done)
				}
			}
		}()
	}
	ready.Wait()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	heapMB := float64(ms.HeapInuse) / (1 << 20)

	b.ResetTimer()
	for i := 0; i < b.N; i += burst {
		n := min(burst, b.N-i)
		for j := range n {
			seq := i + j
			changes[seq].at = time.Now()
			backend.Update("prod", name(seq), func(st *v1alpha1.FlightStatus) { st.Message = strconv.Itoa(seq) })
		}
		for j := range n {
			select {
			case <-changes[i+j].done:
			case err := <-errs:
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()

	delays := make([]float64, b.N)
	for i, c := range changes {
		delays[i] = float64(c.lastAt.Sub(c.at)) / float64(time.Millisecond)
	}
	slices.Sort(delays)
	b.ReportMetric(delays[len(delays)/2], "p50-ms")
	b.ReportMetric(delays[min(len(delays)-1, len(delays)*99/100)], "p99-ms")
	b.ReportMetric(heapMB, "heap-MB")
	cancel()
	stopped.Wait()
}
