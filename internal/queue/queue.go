// Package queue is a first-in first-out queue on a ring buffer: popping does
// not shrink the buffer, so a queue that fills and empties at the same pace
// (requests in flight on a connection) stops allocating once it is big
// enough.
package queue

// Queue is a FIFO of T; the zero value is empty and ready to use.
type Queue[T any] struct {
	buf  []T
	head int
	n    int
}

// Len reports how many items are queued.
func (q *Queue[T]) Len() int { return q.n }

// Push adds v at the back.
func (q *Queue[T]) Push(v T) {
	if q.n == len(q.buf) {
		q.grow()
	}
	q.buf[(q.head+q.n)%len(q.buf)] = v
	q.n++
}

// At returns a pointer to the i-th item from the front; 0 <= i < Len().
func (q *Queue[T]) At(i int) *T { return &q.buf[(q.head+i)%len(q.buf)] }

// Pop removes and returns the front item; the queue must not be empty.
func (q *Queue[T]) Pop() T {
	var zero T
	v := q.buf[q.head]
	q.buf[q.head] = zero // let the garbage collector have it
	q.head = (q.head + 1) % len(q.buf)
	q.n--
	return v
}

func (q *Queue[T]) grow() {
	nb := make([]T, max(2*len(q.buf), 8))
	for i := range q.n {
		nb[i] = *q.At(i)
	}
	q.buf, q.head = nb, 0
}
