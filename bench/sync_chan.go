// SPDX-License-Identifier: MIT

// bench/sync_chan.go: Go's side of bench/sync (run with GOMAXPROCS=1).
//
//	go run sync_chan.go
//
// A sync.Mutex handed between two goroutines (each locks it, yields with
// runtime.Gosched while holding it, unlocks), and a round trip through two
// unbuffered channels between two goroutines. Prints "LOCK_NS QUEUE_NS": ns
// per lock and per round trip, wall time, the median of 3 runs.
package main

import (
	"fmt"
	"runtime"
	"sort"
	"sync"
	"time"
)

const handoffs = 1000000
const roundTrips = 1000000

func lockRun() float64 {
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for g := 0; g < 2; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < handoffs; i++ {
				mu.Lock()
				runtime.Gosched()
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return float64(time.Since(start).Nanoseconds()) / (2 * handoffs)
}

func chanRun() float64 {
	there, back := make(chan int), make(chan int)
	go func() {
		for i := 0; i < roundTrips; i++ {
			back <- <-there
		}
	}()
	start := time.Now()
	for i := 0; i < roundTrips; i++ {
		there <- i
		if <-back != i {
			panic("wrong item")
		}
	}
	return float64(time.Since(start).Nanoseconds()) / roundTrips
}

func median(v []float64) float64 {
	sort.Float64s(v)
	return v[len(v)/2]
}

func main() {
	var locks, chans []float64
	for r := 0; r < 3; r++ {
		locks = append(locks, lockRun())
		chans = append(chans, chanRun())
	}
	fmt.Printf("%.1f %.1f\n", median(locks), median(chans))
}
