// SPDX-License-Identifier: GPL-2.0
/*
 * Out-of-line wrappers for kernel static inline functions and macros used by
 * the Rust part of rnf. See rnf_helpers.h.
 */
#include <linux/percpu.h>
#include <linux/cpumask.h>
#include <linux/skbuff.h>
#include <net/genetlink.h>
#include <net/netns/generic.h>
#include <net/net_namespace.h>
#include <kunit/test-bug.h>

#include "rnf_helpers.h"

void *rnf_net_generic(const struct net *net, unsigned int id)
{
	return net_generic(net, id);
}

u64 rnf_net_cookie(const struct net *net)
{
	return net->net_cookie;
}

struct net *rnf_genl_info_net(const struct genl_info *info)
{
	return genl_info_net(info);
}

struct sk_buff *rnf_genlmsg_new(size_t payload)
{
	return genlmsg_new(payload, GFP_KERNEL);
}

void *rnf_genlmsg_put_reply(struct sk_buff *skb, struct genl_info *info,
			    const void *family, u8 cmd)
{
	return genlmsg_put_reply(skb, info, family, 0, cmd);
}

void rnf_genlmsg_end(struct sk_buff *skb, void *hdr)
{
	genlmsg_end(skb, hdr);
}

int rnf_genlmsg_reply(struct sk_buff *skb, struct genl_info *info)
{
	return genlmsg_reply(skb, info);
}

struct sk_buff *rnf_alloc_skb(unsigned int size)
{
	return alloc_skb(size, GFP_KERNEL);
}

void rnf_kfree_skb(struct sk_buff *skb)
{
	kfree_skb(skb);
}

void rnf_extack_set_msg(struct genl_info *info, const char *msg)
{
	if (info->extack)
		info->extack->_msg = msg;
}

struct rnf_counter __percpu *rnf_counters_alloc(u32 n)
{
	if (!n)
		return NULL;
	return __alloc_percpu(array_size(n, sizeof(struct rnf_counter)),
			      __alignof__(struct rnf_counter));
}

void rnf_counters_free(struct rnf_counter __percpu *c)
{
	free_percpu(c);
}

void rnf_counter_add(struct rnf_counter __percpu *c, u32 idx, u64 bytes)
{
	/* Counters are statistics: a reader may see packets and bytes of one
	 * update apart, as with iptables' and nftables' per-CPU counters. */
	this_cpu_inc(c[idx].packets);
	this_cpu_add(c[idx].bytes, bytes);
}

void rnf_counter_add_on_cpu(struct rnf_counter __percpu *c, u32 idx,
			    u32 cpu, u64 bytes)
{
	struct rnf_counter *p = per_cpu_ptr(c, cpu) + idx;

	WRITE_ONCE(p->packets, READ_ONCE(p->packets) + 1);
	WRITE_ONCE(p->bytes, READ_ONCE(p->bytes) + bytes);
}

void rnf_counter_sum(struct rnf_counter __percpu *c, u32 idx,
		     struct rnf_counter *out)
{
	int cpu;

	out->packets = 0;
	out->bytes = 0;
	for_each_possible_cpu(cpu) {
		const struct rnf_counter *p = per_cpu_ptr(c, cpu) + idx;

		out->packets += READ_ONCE(p->packets);
		out->bytes += READ_ONCE(p->bytes);
	}
}

void rnf_counter_zero(struct rnf_counter __percpu *c, u32 idx)
{
	int cpu;

	for_each_possible_cpu(cpu) {
		struct rnf_counter *p = per_cpu_ptr(c, cpu) + idx;

		WRITE_ONCE(p->packets, 0);
		WRITE_ONCE(p->bytes, 0);
	}
}

u32 rnf_nr_possible_cpus(void)
{
	return nr_cpu_ids;
}

void rnf_kunit_fail(const char *file, u32 line, const char *msg)
{
	kunit_fail_current_test("%s:%u: %s", file, line, msg);
}
