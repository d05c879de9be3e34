package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestContainerMemoryReadsCgroupV2(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		content string
		want    int64
	}{
		{"268435456\n", 256 << 20},
		{"max\n", 0},
	} {
		path := filepath.Join(dir, "memory.max")
		if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
			t.Fatal(err)
		}
		if got := containerMemory(path); got != tc.want {
			t.Errorf("memory.max %q: %d, want %d", tc.content, got, tc.want)
		}
	}
	if got := containerMemory(filepath.Join(dir, "absent")); got != 0 {
		t.Errorf("no memory.max: %d, want 0", got)
	}
}
