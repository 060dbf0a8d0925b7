package healthcheck

import (
	"bytes"
	"net"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/glb-project/glb/bpf"
	"github.com/glb-project/glb/internal/testenv"
)

// TestRedirectDecapsulatesTheProbe runs the GUE probe through
// bpf/redirect.c with BPF_PROG_TEST_RUN: the program must take it on the
// first host and hand the stack the inner echo request, byte for byte.
// It is what makes a GUE check pass on a proxy host, and what the in-place
// check of a local backend relies on.
func TestRedirectDecapsulatesTheProbe(t *testing.T) {
	testenv.RequireRoot(t)
	spec, err := bpf.LoadRedirect()
	if err != nil {
		t.Fatal(err)
	}
	if err := spec.Variables[bpf.RedirectVarCfgSelfIpv4].Set(backIP.As4()); err != nil {
		t.Fatal(err)
	}
	var objs bpf.RedirectObjects
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		t.Fatalf("load bpf/redirect.c: %v", err)
	}
	defer objs.Close()

	mac := net.HardwareAddr{2, 0, 0, 0, 0, 2}
	in, want := inPlaceFrame(mac, dirIP, backIP, 19523, probeID{id: 0x1234, seq: 1, nonce: nonce0})
	if !bytes.Equal(want[14:], mustHex(t, stripComments(goldenProbe))[gueHeaderLen:]) {
		t.Fatal("the expected output is not the golden probe's inner packet")
	}
	for _, tt := range []struct {
		name    string
		in      []byte
		want    []byte
		verdict uint32
	}{
		{"the probe is decapsulated and passed", in, want, tcxNext},
		{"a probe to another port is not GUE and passes untouched", func() []byte {
			b, _ := inPlaceFrame(mac, dirIP, backIP, 19524, probeID{id: 0x1234, seq: 1, nonce: nonce0})
			return b
		}(), nil, tcxNext},
	} {
		t.Run(tt.name, func(t *testing.T) {
			opts := &ebpf.RunOptions{Data: tt.in, DataOut: make([]byte, len(tt.in)+64)}
			verdict, err := objs.GlbRedirect.Run(opts)
			if err != nil {
				t.Fatal(err)
			}
			wantOut := tt.want
			if wantOut == nil {
				wantOut = tt.in
			}
			if verdict != tt.verdict || !bytes.Equal(opts.DataOut, wantOut) {
				t.Fatalf("verdict %d, output\n%x\nwant verdict %d, output\n%x", int32(verdict), opts.DataOut, int32(tt.verdict), wantOut)
			}
		})
	}
}
