package schema

import (
	"os"
	"runtime"
	"sync"
)

// ValidateFiles reads and validates the files at paths, several at a time
// (one worker per CPU), and returns one result per path in the same order:
// nil for a valid file, its errors otherwise. A file that cannot be read
// gets a one-entry list naming the problem.
func ValidateFiles(paths []string) []ErrorList {
	results := make([]ErrorList, len(paths))
	workers := min(runtime.GOMAXPROCS(0), len(paths))
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				data, err := os.ReadFile(paths[i])
				if err != nil {
					results[i] = ErrorList{{Pos: Pos{File: paths[i]}, Msg: "cannot read file: " + err.Error()}}
					continue
				}
				results[i] = Validate(paths[i], data)
			}
		}()
	}
	for i := range paths {
		next <- i
	}
	close(next)
	wg.Wait()
	return results
}
