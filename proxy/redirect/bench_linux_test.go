package redirect

import (
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"
)

// BenchmarkProgram measures what bpf/redirect.c costs per packet, beside a
// TC program that only returns TC_ACT_OK, run the same way in the same
// process.
//
// How: BPF_PROG_TEST_RUN with repeat = 1, so every run sees the packet as
// received. A repeat > 1 would rerun the program on the skb it has already
// rewritten: the second run of a decapsulated packet would time the
// "not GUE" path, and of a forwarded one the "other host" path. The kernel
// times only the program run (not the syscall or the skb set-up), so the
// figure is the program's cost plus the timer's own, which the baseline
// carries too. Runs of the program and the baseline alternate, so both
// see the same machine noise. Both run with the skb context the golden
// tests use (skb->dev = the uplink), and after the timed runs the
// counters must show every one of them on the path checked first.
//
// Reported per case: ns/pkt (the program), base-ns/pkt (the baseline),
// extra-ns/pkt (the difference) and x-base (the ratio).
//
//	sudo go test ./proxy/redirect -run '^$' -bench Program -benchtime 200000x
func BenchmarkProgram(b *testing.B) {
	e := newProgEnv(b)
	base, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "tc_ok",
		Type:         ebpf.SchedCLS,
		License:      "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}, // TC_ACT_OK
	})
	if err != nil {
		b.Fatal(err)
	}
	defer base.Close()

	l := e.listen(b, netip.AddrPortFrom(vip4, 8443))
	client, _ := e.connect(b, l, localClient)
	cport := uint16(client.LocalAddr().(*net.TCPAddr).Port)

	cases := []struct {
		name    string
		frame   []byte
		outcome string
	}{
		{"not_gue", ether(selfMAC, dirMAC, ethIPv4, v4tcp(remote, selfIP, 40001, 22, ackSeg)), "passed_not_gue"},
		{"local_syn", fromDirector(gueHdr{hops: hops1}, v4tcp(remote, vip4, 40000, 443, synSeg)), "accepted_syn"},
		{"local_established", fromDirector(gueHdr{hops: hops1}, v4tcp(localClient, vip4, cport, 8443, ackSeg)), "accepted_established"},
		{"local_last_resort", fromDirector(gueHdr{hops: hops1, nextHop: 1}, v4tcp(remote, vip4, 40001, 443, ackSeg)), "accepted_last_resort"},
		{"forward", fromDirector(gueHdr{hops: hops1}, v4tcp(remote, vip4, 40001, 443, ackSeg)), "forwarded_to_alternate"},
		{"v6_syn", fromDirector(gueHdr{hops: hops1}, v6tcp(remote6, vip6, 40000, 443, synSeg)), "accepted_syn"},
		{"v6_forward", fromDirector(gueHdr{hops: hops1}, v6tcp(remote6, vip6, 40001, 443, ackSeg)), "forwarded_to_alternate"},
		// Behind hop-by-hop and destination options headers.
		{"v6ext_syn", fromDirector(gueHdr{hops: hops1}, v6tcpExt(remote6, vip6, 40000, 443, synSeg, hopByHop(), destOpts())), "accepted_syn"},
		{"v6ext_forward", fromDirector(gueHdr{hops: hops1}, v6tcpExt(remote6, vip6, 40001, 443, ackSeg, hopByHop(), destOpts())), "forwarded_to_alternate"},
	}
	ctx := &skbContext{IngressIfindex: uint32(e.ifindex), Ifindex: uint32(e.ifindex)}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			if _, _, outcome := e.run(b, c.frame); outcome != c.outcome {
				b.Fatalf("the packet takes the %s path, want %s", outcome, c.outcome)
			}
			before := e.counters(b)
			var prog, floor time.Duration
			out := make([]byte, len(c.frame)+512)
			if err := e.ns.Do(b, func() error {
				for b.Loop() {
					// The same context as e.run's check: skb->dev is the
					// uplink, as for a received packet.
					_, d, err := testRun(e.objs.GlbRedirect, c.frame, out, ctx)
					if err != nil {
						return err
					}
					prog += d
					_, d, err = testRun(base, c.frame, out, ctx)
					if err != nil {
						return err
					}
					floor += d
				}
				return nil
			}); err != nil {
				b.Fatal(err)
			}
			// Every timed run took the checked path, and only it.
			after := e.counters(b)
			for i := range after {
				want := uint64(0)
				if outcomeLabels[i] == c.outcome {
					want = uint64(b.N)
				}
				if d := after[i].Packets - before[i].Packets; d != want {
					b.Fatalf("outcome %s moved by %d in %d timed runs, want %d", outcomeLabels[i], d, b.N, want)
				}
			}
			n := float64(b.N)
			b.ReportMetric(float64(prog.Nanoseconds())/n, "ns/pkt")
			b.ReportMetric(float64(floor.Nanoseconds())/n, "base-ns/pkt")
			b.ReportMetric(float64((prog-floor).Nanoseconds())/n, "extra-ns/pkt")
			b.ReportMetric(float64(prog)/float64(floor), "x-base")
		})
	}
}

// testRunAttr is the BPF_PROG_TEST_RUN part of union bpf_attr.
type testRunAttr struct {
	progFD, retval          uint32
	dataSizeIn, dataSizeOut uint32
	dataIn, dataOut         uint64
	repeat, duration        uint32
	ctxSizeIn, ctxSizeOut   uint32
	ctxIn, ctxOut           uint64
	flags, cpu, batchSize   uint32
	_                       uint32
}

// testRun runs prog once on frame with the skb context ctx, as
// Program.Run does, and returns the kernel's timing of the run, which
// Program.Run does not report (Program.Benchmark does, but takes no
// context).
func testRun(prog *ebpf.Program, frame, out []byte, ctx *skbContext) (uint32, time.Duration, error) {
	attr := &testRunAttr{
		progFD:      uint32(prog.FD()),
		dataSizeIn:  uint32(len(frame)),
		dataSizeOut: uint32(len(out)),
		dataIn:      uint64(uintptr(unsafe.Pointer(&frame[0]))),
		dataOut:     uint64(uintptr(unsafe.Pointer(&out[0]))),
		repeat:      1,
		ctxSizeIn:   uint32(unsafe.Sizeof(*ctx)),
		ctxIn:       uint64(uintptr(unsafe.Pointer(ctx))),
	}
	_, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_TEST_RUN, uintptr(unsafe.Pointer(attr)), unsafe.Sizeof(*attr))
	// The attribute holds the buffers' addresses as integers, which do
	// not keep them alive.
	runtime.KeepAlive(frame)
	runtime.KeepAlive(out)
	runtime.KeepAlive(ctx)
	if errno != 0 {
		return 0, 0, fmt.Errorf("BPF_PROG_TEST_RUN: %w", errno)
	}
	return attr.retval, time.Duration(attr.duration), nil
}
