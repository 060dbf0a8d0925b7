/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * siphash.h: SipHash-2-4 for BPF programs, fed one 64-bit block at a time.
 * The caller packs the message into little-endian words (which is how a
 * little-endian BPF target loads packet bytes), so the result equals
 * SipHash-2-4 over the bytes, as dchest/siphash and GLB's C compute it.
 */
#ifndef GLB_SIPHASH_H
#define GLB_SIPHASH_H

#include <linux/types.h>

struct siphash {
	__u64 v0, v1, v2, v3;
};

#define SIP_ROTL(x, b) (((x) << (b)) | ((x) >> (64 - (b))))

static __always_inline void sip_round(struct siphash *s)
{
	s->v0 += s->v1;
	s->v1 = SIP_ROTL(s->v1, 13);
	s->v1 ^= s->v0;
	s->v0 = SIP_ROTL(s->v0, 32);
	s->v2 += s->v3;
	s->v3 = SIP_ROTL(s->v3, 16);
	s->v3 ^= s->v2;
	s->v0 += s->v3;
	s->v3 = SIP_ROTL(s->v3, 21);
	s->v3 ^= s->v0;
	s->v2 += s->v1;
	s->v1 = SIP_ROTL(s->v1, 17);
	s->v1 ^= s->v2;
	s->v2 = SIP_ROTL(s->v2, 32);
}

static __always_inline void sip_init(struct siphash *s, __u64 k0, __u64 k1)
{
	s->v0 = k0 ^ 0x736f6d6570736575ULL;
	s->v1 = k1 ^ 0x646f72616e646f6dULL;
	s->v2 = k0 ^ 0x6c7967656e657261ULL;
	s->v3 = k1 ^ 0x7465646279746573ULL;
}

/* sip_block absorbs one full 8-byte block (2 compression rounds). */
static __always_inline void sip_block(struct siphash *s, __u64 m)
{
	s->v3 ^= m;
	sip_round(s);
	sip_round(s);
	s->v0 ^= m;
}

/* sip_final absorbs the last 0..7 bytes (tail, little-endian, upper bytes
 * zero) of a message of len bytes and returns the hash. */
static __always_inline __u64 sip_final(struct siphash *s, __u64 tail, __u32 len)
{
	sip_block(s, tail | ((__u64)(len & 0xff) << 56));
	s->v2 ^= 0xff;
	sip_round(s);
	sip_round(s);
	sip_round(s);
	sip_round(s);
	return s->v0 ^ s->v1 ^ s->v2 ^ s->v3;
}

#endif /* GLB_SIPHASH_H */
