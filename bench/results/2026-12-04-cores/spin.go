package main

import (
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
)

func work(n int) uint64 {
	var x uint64 = 1
	for i := 0; i < n; i++ {
		x = x*6364136223846793005 + 1442695040888963407
	}
	return x
}

func main() {
	par, _ := strconv.Atoi(os.Args[1])
	var wg sync.WaitGroup
	t := time.Now()
	for p := 0; p < par; p++ {
		wg.Add(1)
		go func() { defer wg.Done(); work(1 << 30) }()
	}
	wg.Wait()
	fmt.Println(par, time.Since(t))
}
