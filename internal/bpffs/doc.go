// Package bpffs finds or mounts the BPF filesystem that glb-director and
// glb-redirect pin their maps and links on, so a restarted daemon can take
// over the running programs without a gap.
package bpffs
