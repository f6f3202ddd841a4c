/* SPDX-License-Identifier: GPL-2.0 */
/*
 * C helpers for rnf: out-of-line versions of the static inline functions
 * and macros the Rust side needs. Nothing here has logic of its own; the
 * Rust abstractions in rust/ wrap each of these with a safe interface.
 */
#ifndef RNF_HELPERS_H
#define RNF_HELPERS_H

#include <linux/types.h>

struct net;
struct sk_buff;
struct genl_info;
struct kunit;

/* Per-network-namespace data slot (struct pernet_operations::size). */
void *rnf_net_generic(const struct net *net, unsigned int id);
u64 rnf_net_cookie(const struct net *net);

/* Generic netlink replies. */
struct net *rnf_genl_info_net(const struct genl_info *info);
struct sk_buff *rnf_genlmsg_new(size_t payload);
void *rnf_genlmsg_put_reply(struct sk_buff *skb, struct genl_info *info,
			    const void *family, u8 cmd);
void rnf_genlmsg_end(struct sk_buff *skb, void *hdr);
int rnf_genlmsg_reply(struct sk_buff *skb, struct genl_info *info);
struct sk_buff *rnf_alloc_skb(unsigned int size);
void rnf_kfree_skb(struct sk_buff *skb);
void rnf_extack_set_msg(struct genl_info *info, const char *msg);

/* Per-CPU packet/byte counters. */
struct rnf_counter {
	u64 packets;
	u64 bytes;
};
struct rnf_counter __percpu *rnf_counters_alloc(u32 n);
void rnf_counters_free(struct rnf_counter __percpu *c);
void rnf_counter_add(struct rnf_counter __percpu *c, u32 idx, u64 bytes);
void rnf_counter_sum(struct rnf_counter __percpu *c, u32 idx,
		     struct rnf_counter *out);
void rnf_counter_zero(struct rnf_counter __percpu *c, u32 idx);
void rnf_counter_add_on_cpu(struct rnf_counter __percpu *c, u32 idx,
			    u32 cpu, u64 bytes);
u32 rnf_nr_possible_cpus(void);

/* KUnit: fail the running test, if any, with a message. */
void rnf_kunit_fail(const char *file, u32 line, const char *msg);

#endif
