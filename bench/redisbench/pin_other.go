//go:build !linux

package main

import "errors"

// pin needs Linux's sched_setaffinity; -placements is Linux's.
func pin(int, ...int) error { return errors.New("pinning processes to CPUs needs Linux") }

// allCPUs is every CPU, as far as this process can tell.
func allCPUs() []int { return []int{0} }
