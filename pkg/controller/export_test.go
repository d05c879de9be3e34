package controller

// FakeResolver is fakeResolver, for the package's external tests.
var FakeResolver = fakeResolver
