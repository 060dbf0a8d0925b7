// Command glb-director is glb's L4 director. It loads the XDP program of
// bpf/director.c on the given interfaces and keeps its forwarding tables
// equal to the config (DESIGN.md §4): every packet to a VIP is hashed onto
// a row of proxy hosts and sent there in GUE. Run `glb-director --help`
// for the flags; docs/director.md explains operations.
package main
