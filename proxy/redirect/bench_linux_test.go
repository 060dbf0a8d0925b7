package redirect

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
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
// see the same machine noise.
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
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			if _, _, outcome := e.run(b, c.frame); outcome != c.outcome {
				b.Fatalf("the packet takes the %s path, want %s", outcome, c.outcome)
			}
			var prog, floor time.Duration
			if err := e.ns.Do(b, func() error {
				for b.Loop() {
					_, d, err := e.objs.GlbRedirect.Benchmark(c.frame, 1, nil)
					if err != nil {
						return err
					}
					prog += d
					_, d, err = base.Benchmark(c.frame, 1, nil)
					if err != nil {
						return err
					}
					floor += d
				}
				return nil
			}); err != nil {
				b.Fatal(err)
			}
			n := float64(b.N)
			b.ReportMetric(float64(prog.Nanoseconds())/n, "ns/pkt")
			b.ReportMetric(float64(floor.Nanoseconds())/n, "base-ns/pkt")
			b.ReportMetric(float64((prog-floor).Nanoseconds())/n, "extra-ns/pkt")
			b.ReportMetric(float64(prog)/float64(floor), "x-base")
		})
	}
}
