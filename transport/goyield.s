// This file lets thread.go declare goyield without a body (go:linkname to
// runtime.goyield): the Go compiler accepts a function without a body only
// in a package that has assembly.
