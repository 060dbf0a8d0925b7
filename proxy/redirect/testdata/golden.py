#!/usr/bin/python3
"""Writes the golden packet captures of proxy/redirect's program tests.

scapy builds them, independently of the Go packet builders: each *_in.pcap
is a frame as glb-director sends it, each *_out.pcap what bpf/redirect.c
must leave behind. Regenerate with: /usr/bin/python3 golden.py (needs
Debian's python3-scapy). The frames use the addresses of
helpers_linux_test.go.
"""
import struct

from scapy.all import (IP, IPv6, TCP, UDP, Ether, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment,
                       IPv6ExtHdrHopByHop, PadN, Raw, RouterAlert, wrpcap)

SELF, PEER, DIRECTOR = "10.1.0.11", "10.1.0.12", "10.1.0.2"
VIP4, VIP6 = "10.100.0.1", "fd00:100::1"
REMOTE, REMOTE6 = "198.51.100.7", "2001:db8:51::7"
SELF_MAC, DIR_MAC = "02:00:00:00:00:11", "02:00:00:00:00:02"


def gue(proto, next_hop, hops):
    """GUE base header + GLB private data + hop list (DESIGN.md §3)."""
    hdr = struct.pack("!BBH", 1 + len(hops), proto, 0)
    hdr += struct.pack("!HBB", 0, next_hop, len(hops))
    for h in hops:
        hdr += bytes(int(x) for x in h.split("."))
    return hdr


def outer(src, dst, payload, udp_csum, ttl=64, ident=0, tos=0, sport=0x9234):
    udp = UDP(sport=sport, dport=19523)
    if not udp_csum:
        udp.chksum = 0
    return Ether(dst=SELF_MAC, src=DIR_MAC) / IP(src=src, dst=dst, flags="DF", ttl=ttl, id=ident, tos=tos) / udp / Raw(payload)


def write(name, pkt):
    pkt.time = 0  # a fixed timestamp, so that a rerun rewrites the same bytes
    wrpcap(name, [pkt])


syn = IP(src=REMOTE, dst=VIP4, id=7, flags="DF", ttl=64) / TCP(
    sport=40000, dport=443, flags="S", seq=99, ack=0, window=64240, options=[("MSS", 1460)])
write("syn_in.pcap", outer(DIRECTOR, SELF, gue(4, 0, [PEER]) + bytes(syn), False))
write("syn_out.pcap", Ether(dst=SELF_MAC, src=DIR_MAC) / syn)

ack6 = IPv6(src=REMOTE6, dst=VIP6, hlim=64) / TCP(
    sport=40001, dport=443, flags="PA", seq=1000, ack=2000, window=64240) / Raw(b"hello, second chance")
write("ack6_last_in.pcap", outer(DIRECTOR, SELF, gue(41, 1, [PEER]) + bytes(ack6), False))
write("ack6_last_out.pcap", Ether(dst=SELF_MAC, src=DIR_MAC, type=0x86DD) / ack6)

ack = IP(src=REMOTE, dst=VIP4, id=7, flags="DF", ttl=64) / TCP(
    sport=40001, dport=443, flags="PA", seq=1000, ack=2000, window=64240) / Raw(b"hello, second chance")
hops = ["10.1.0.13", PEER, SELF]
write("fwd_in.pcap", outer(DIRECTOR, SELF, gue(4, 1, hops) + bytes(ack), True, ttl=17, ident=0x1234, tos=0x10))
write("fwd_out.pcap", outer(SELF, PEER, gue(4, 2, hops) + bytes(ack), True, ttl=17, ident=0x1234, tos=0x10))
write("fwd_nocsum_in.pcap", outer(DIRECTOR, SELF, gue(4, 0, [PEER]) + bytes(ack), False))
write("fwd_nocsum_out.pcap", outer(SELF, PEER, gue(4, 1, [PEER]) + bytes(ack), False))

# Inner IPv6 behind extension headers: a hop-by-hop header with a router
# alert (padded) and a destination options header of padding.
syn6ext = IPv6(src=REMOTE6, dst=VIP6, hlim=64) / IPv6ExtHdrHopByHop(options=[RouterAlert()]) / \
    IPv6ExtHdrDestOpt(options=[PadN(optdata=b"\0" * 4)]) / TCP(
        sport=40000, dport=443, flags="S", seq=99, ack=0, window=64240, options=[("MSS", 1460)])
write("ext6_syn_in.pcap", outer(DIRECTOR, SELF, gue(41, 0, [PEER]) + bytes(syn6ext), False))
write("ext6_syn_out.pcap", Ether(dst=SELF_MAC, src=DIR_MAC, type=0x86DD) / syn6ext)

# The first fragment (offset 0, more fragments) of an IPv6 ACK behind a
# hop-by-hop header: 32 of its 40 TCP bytes, the checksum that of the whole
# segment. No local socket: it goes to the next hop.
seg = bytes(IPv6(src=REMOTE6, dst=VIP6) / TCP(
    sport=40001, dport=443, flags="PA", seq=1000, ack=2000, window=64240) / Raw(b"hello, second chance"))[40:]
frag6 = IPv6(src=REMOTE6, dst=VIP6, hlim=64) / IPv6ExtHdrHopByHop(options=[RouterAlert()]) / \
    IPv6ExtHdrFragment(nh=6, offset=0, m=1, id=0x1234) / Raw(seg[:32])
write("frag6_first_fwd_in.pcap", outer(DIRECTOR, SELF, gue(41, 0, [PEER]) + bytes(frag6), False))
write("frag6_first_fwd_out.pcap", outer(SELF, PEER, gue(41, 1, [PEER]) + bytes(frag6), False))
