package bpf

// redirect.c: GUE decapsulation and second chance on proxy hosts
// (DESIGN.md §5), loaded by proxy/redirect. The exported identifier
// Redirect keeps its generated names apart from the director's.
//go:generate go tool bpf2go -tags linux -target bpfel Redirect redirect.c -- -I/usr/include/x86_64-linux-gnu -I./include -O2 -g -Wall -Werror
