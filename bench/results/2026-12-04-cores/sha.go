package main

import (
	"crypto/sha256"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
)

func main() {
	par, _ := strconv.Atoi(os.Args[1])
	buf := make([]byte, 1<<20)
	var wg sync.WaitGroup
	t := time.Now()
	for p := 0; p < par; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := sha256.New()
			for i := 0; i < 1000; i++ {
				h.Write(buf)
			}
			_ = h.Sum(nil)
		}()
	}
	wg.Wait()
	fmt.Println(par, time.Since(t))
}
