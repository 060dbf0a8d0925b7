// Package version holds the build version that every glb binary prints for
// --version. The Makefile sets it with -ldflags; plain `go build` gives "dev".
package version

// Version is the release or git description of this build.
var Version = "dev"
