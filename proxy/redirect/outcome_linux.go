package redirect

import "github.com/glb-project/glb/bpf"

// outcomeLabels names every enum outcome of bpf/redirect.c, in enum
// order, for the outcome label of glb_redirect_packets_total. The names
// follow GLB's /proc/glb_redirect_stats without its _packets suffix.
// TestOutcomeLabels fails when this table drifts from the C enum.
var outcomeLabels = [...]string{
	bpf.RedirectOutcomeOUTCOME_PASSED_NOT_GUE:           "passed_not_gue",
	bpf.RedirectOutcomeOUTCOME_PASSED_OTHER_HOST:        "passed_other_host",
	bpf.RedirectOutcomeOUTCOME_ACCEPTED_SYN:             "accepted_syn",
	bpf.RedirectOutcomeOUTCOME_ACCEPTED_ESTABLISHED:     "accepted_established",
	bpf.RedirectOutcomeOUTCOME_ACCEPTED_SYN_RECV:        "accepted_syn_recv",
	bpf.RedirectOutcomeOUTCOME_ACCEPTED_TIME_WAIT:       "accepted_time_wait",
	bpf.RedirectOutcomeOUTCOME_ACCEPTED_SYN_COOKIE:      "accepted_syn_cookie",
	bpf.RedirectOutcomeOUTCOME_ACCEPTED_LAST_RESORT:     "accepted_last_resort",
	bpf.RedirectOutcomeOUTCOME_ACCEPTED_UDP:             "accepted_udp",
	bpf.RedirectOutcomeOUTCOME_ACCEPTED_ICMP:            "accepted_icmp",
	bpf.RedirectOutcomeOUTCOME_ACCEPTED_FRAGMENT:        "accepted_fragment",
	bpf.RedirectOutcomeOUTCOME_FORWARDED_TO_SELF:        "forwarded_to_self",
	bpf.RedirectOutcomeOUTCOME_FORWARDED_TO_ALTERNATE:   "forwarded_to_alternate",
	bpf.RedirectOutcomeOUTCOME_DROPPED_DECAP_FAILED:     "dropped_decap_failed",
	bpf.RedirectOutcomeOUTCOME_DROPPED_INNER_PROTO:      "dropped_inner_proto",
	bpf.RedirectOutcomeOUTCOME_MALFORMED_OUTER:          "malformed_outer",
	bpf.RedirectOutcomeOUTCOME_MALFORMED_SHORT:          "malformed_short",
	bpf.RedirectOutcomeOUTCOME_MALFORMED_GUE_VERSION:    "malformed_gue_version",
	bpf.RedirectOutcomeOUTCOME_MALFORMED_GUE_FLAGS:      "malformed_gue_flags",
	bpf.RedirectOutcomeOUTCOME_MALFORMED_GUE_PROTO:      "malformed_gue_proto",
	bpf.RedirectOutcomeOUTCOME_MALFORMED_GUE_HLEN:       "malformed_gue_hlen",
	bpf.RedirectOutcomeOUTCOME_MALFORMED_PRIVATE_TYPE:   "malformed_private_type",
	bpf.RedirectOutcomeOUTCOME_MALFORMED_NEXT_HOP:       "malformed_next_hop",
	bpf.RedirectOutcomeOUTCOME_MALFORMED_INNER:          "malformed_inner",
	bpf.RedirectOutcomeOUTCOME_MALFORMED_HOP_ADDRESS:    "malformed_hop_address",
	bpf.RedirectOutcomeOUTCOME_DROPPED_UNTRUSTED_SOURCE: "dropped_untrusted_source",
}
