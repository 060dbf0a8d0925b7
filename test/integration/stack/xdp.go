package stack

import (
	"net"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"github.com/glb-project/glb/internal/nstest"
)

// attachPass attaches an XDP program that returns XDP_PASS to iface in ns
// (native mode), so that the veth accepts the XDP_TX frames its peer sends.
// It stays attached until tb's cleanups.
func (s *Stack) attachPass(ns *nstest.NS, iface string) {
	tb := s.tb
	tb.Helper()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "glb_stack_pass", Type: ebpf.XDP, License: "MIT",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2 /* XDP_PASS */), asm.Return()},
	})
	if err != nil {
		tb.Fatalf("stack: load an XDP_PASS program: %v", err)
	}
	tb.Cleanup(func() { prog.Close() })
	if err := ns.Do(tb, func() error {
		ifc, err := net.InterfaceByName(iface)
		if err != nil {
			return err
		}
		l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifc.Index, Flags: link.XDPDriverMode})
		if err != nil {
			return err
		}
		tb.Cleanup(func() { l.Close() })
		return nil
	}); err != nil {
		tb.Fatalf("stack: attach XDP_PASS to %s in %s: %v", iface, ns.Name, err)
	}
}
