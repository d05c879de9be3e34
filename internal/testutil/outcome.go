package testutil

// Outcome makes n calls one after another (call gets the call's index)
// and returns how many failed and the first failure: what a test of
// retries counts, as a client would see it.
func Outcome(n int, call func(i int) error) (failed int, first error) {
	for i := range n {
		if err := call(i); err != nil {
			failed++
			if first == nil {
				first = err
			}
		}
	}
	return failed, first
}
