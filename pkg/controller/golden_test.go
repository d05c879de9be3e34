package controller

import (
	"context"
	"errors"
	"os"
	"testing"
)

// fakeResolver answers for the names the golden files use, so tests do
// not depend on the machine's resolver.
func fakeResolver(_ context.Context, host string) ([]string, error) {
	switch host {
	case "thrift.example.com":
		return []string{"198.51.100.8", "198.51.100.7"}, nil
	}
	return nil, errors.New("no such host")
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
