package bpf

//go:generate go tool bpf2go -tags linux -target bpfel -type bind_key -type bind_ref -type bind_value -type port_key -type table_row -type table_meta -type bind_stats -type glb_end Director director.c -- -I./include -I/usr/include/x86_64-linux-gnu -O2 -g -Wall -Werror
