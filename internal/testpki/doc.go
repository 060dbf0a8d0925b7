// Package testpki writes a throw-away certificate authority and a server
// certificate it signed, as PEM files, for tests and the demo that serve
// TLS with real clients (curl, git, gh, go-github) that must trust it.
package testpki
