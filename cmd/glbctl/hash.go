package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"strings"
	"text/tabwriter"

	"github.com/glb-project/glb/director/table"
)

func hashCommand() command {
	return command{
		path:    "hash",
		args:    "--config FILE --src IP[:PORT] [--dst IP[:PORT]] [--proto tcp|udp] [--table NAME]",
		summary: "show the row and hops a flow goes to",
		help: `Computes the flow hash exactly as glb-director's XDP program does and prints
the row and its hop list. With --dst, the table is the one whose bind serves
that destination; otherwise give --table (or the config has one table).
IPv6 addresses with a port are written [2001:db8::1]:443.

Every field the table hashes (hash_fields) must be given: a table that
hashes src_port needs --src IP:PORT, dst_addr needs --dst, dst_port needs
--dst IP:PORT. Source and destination must be of one address family.`,
		flags: func(fs *flag.FlagSet) func(context.Context, env) error {
			config := fs.String("config", "", "forwarding table config `FILE`")
			src := fs.String("src", "", "the client's `IP[:PORT]`")
			dst := fs.String("dst", "", "the VIP's `IP[:PORT]`")
			proto := fs.String("proto", "tcp", "the flow's `protocol`: tcp or udp")
			name := fs.String("table", "", "table `NAME`")
			return func(ctx context.Context, e env) error {
				c, err := loadConfig(*config)
				if err != nil {
					return err
				}
				if *src == "" {
					return errors.New("--src is required: the client's IP[:PORT]")
				}
				var f table.Flow
				var given flowGiven
				if f.Src, f.SrcPort, given.srcPort, err = parseHostPort(*src); err != nil {
					return fmt.Errorf("--src: %w", err)
				}
				if *dst != "" {
					if f.Dst, f.DstPort, given.dstPort, err = parseHostPort(*dst); err != nil {
						return fmt.Errorf("--dst: %w", err)
					}
					if f.Src.Is4() != f.Dst.Is4() {
						return fmt.Errorf("--src %s and --dst %s are of different address families: give both as IPv4 or both as IPv6", f.Src, f.Dst)
					}
				}
				var p table.Proto
				if err := p.UnmarshalText([]byte(*proto)); err != nil {
					return fmt.Errorf("--proto: %w", err)
				}
				spec, err := tableFor(c, *name, p, f)
				if err != nil {
					return err
				}
				if err := given.check(spec, f); err != nil {
					return err
				}
				h := table.Hash(spec.HashKey, spec.Fields(), f)
				row := table.RowOf(h)
				t := table.Build(spec, nil)
				hops := "none: no usable backend, the director drops this table's packets"
				if t.Width > 0 {
					var s []string
					for _, a := range t.Hops(row) {
						s = append(s, a.String())
					}
					hops = strings.Join(s, ", ")
				}
				tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
				fmt.Fprintf(tw, "table\t%s\n", spec.Name)
				fmt.Fprintf(tw, "fields\t%s\n", strings.Join(spec.Fields().Names(), ","))
				fmt.Fprintf(tw, "hash\t%#016x\n", h)
				fmt.Fprintf(tw, "row\t%d (%#04x)\n", row, row)
				fmt.Fprintf(tw, "hops\t%s\n", hops)
				return tw.Flush()
			}
		},
	}
}

// tableFor finds the table a flow belongs to: by name, by the bind that
// serves its destination (as the director picks it), or the only table.
func tableFor(c *table.Config, name string, p table.Proto, f table.Flow) (*table.Spec, error) {
	if name != "" || !f.Dst.IsValid() {
		s, err := pickTable(c, name)
		if err != nil && !f.Dst.IsValid() {
			return nil, fmt.Errorf("%w, or give --dst", err)
		}
		return s, err
	}
	pkt := table.Packet{Dst: f.Dst, BindProto: p, Port: f.DstPort}
	if f.DstPort == 0 {
		pkt.BindProto = 0 // no port: the first bind on the address, as for an echo
	}
	if s, _ := c.Match(pkt); s != nil {
		return s, nil
	}
	return nil, fmt.Errorf("no bind serves %s %s: the director would pass this packet to the host", p, formatHostPort(f.Dst, f.DstPort))
}

// flowGiven records which ports the command line gave: port 0 is a real
// value (an echo request is hashed with ports 0), so it cannot mean absent.
type flowGiven struct{ srcPort, dstPort bool }

// check refuses a flow that lacks a field the table hashes: the hash of a
// missing field would be a row the director never picks for that flow.
func (g flowGiven) check(spec *table.Spec, f table.Flow) error {
	fields := spec.Fields()
	var missing []string
	var fix []string
	if fields&table.SrcPort != 0 && !g.srcPort {
		missing = append(missing, "src_port")
		fix = append(fix, "--src IP:PORT")
	}
	needDst, needDstPort := fields&table.DstAddr != 0 && !f.Dst.IsValid(), fields&table.DstPort != 0 && !g.dstPort
	if needDst {
		missing = append(missing, "dst_addr")
	}
	if needDstPort {
		missing = append(missing, "dst_port")
	}
	switch {
	case needDstPort && f.Dst.Is4():
		fix = append(fix, "--dst "+f.Dst.String()+":PORT")
	case needDstPort && f.Dst.IsValid():
		fix = append(fix, "--dst ["+f.Dst.String()+"]:PORT")
	case needDstPort:
		fix = append(fix, "--dst IP:PORT")
	case needDst:
		fix = append(fix, "--dst IP[:PORT]")
	}
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("table %s hashes %s: give %s", spec.Name, strings.Join(missing, " and "), strings.Join(fix, " and "))
}

// parseHostPort parses IP or IP:PORT ([IPv6]:PORT); hasPort says whether a
// port was given.
func parseHostPort(s string) (a netip.Addr, port uint16, hasPort bool, err error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr(), ap.Port(), true, nil
	}
	a, err = netip.ParseAddr(strings.Trim(s, "[]"))
	if err != nil {
		return netip.Addr{}, 0, false, fmt.Errorf("%q is not IP or IP:PORT ([IPv6]:PORT)", s)
	}
	return a, 0, false, nil
}

func formatHostPort(a netip.Addr, port uint16) string {
	if port == 0 {
		return a.String()
	}
	return netip.AddrPortFrom(a, port).String()
}
