package controller

import "time"

// What the package's external tests (package controller_test, which use
// controllertest) need of its internals.

// FakeResolver is fakeResolver.
var FakeResolver = fakeResolver

// Rejected is rejected: the rejections among unused.
var Rejected = rejected

// PushNow makes one push of p now, as Run does once changes have waited
// out the debounce.
func (p *Pipeline) PushNow(since time.Time) {
	p.init()
	p.push(since, false)
}
