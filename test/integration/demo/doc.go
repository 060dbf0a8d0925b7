// Command glb-demo runs the whole glb stack in network namespaces against
// githubsim and prints what to try: `sudo make demo` runs it through
// scripts/demo.sh. It uses package stack, the same topology the
// end-to-end tests build, with fixed names people can type (glb-client,
// glb-router, glb-dir1, …). With --check it runs and verifies every
// command it would print, then tears down: CI's proof that the demo works.
package main
