// Command githubsim runs the GitHub API simulator of package
// test/githubsim as a server, for `make demo` and for tests that run the
// stack in other processes or network namespaces. See --help.
package main
