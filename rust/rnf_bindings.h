/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The kernel APIs rnf uses, for bindgen (see Kbuild). Rust code reaches them
 * only through the safe abstractions in rust/{netfilter,genl,pernet,percpu,skb}.rs.
 */
#include <linux/netfilter.h>
#include <linux/netfilter_ipv4.h>
#include <linux/netfilter_ipv6.h>
#include <linux/skbuff.h>
#include <linux/cpumask.h>
#include <linux/jiffies.h>
#include <linux/preempt.h>
#include <asm/current.h>
#include <net/genetlink.h>
#include <net/net_namespace.h>
#include <net/netns/generic.h>
#include <uapi/linux/netfilter.h>
#include <uapi/linux/genetlink.h>

#include "rnf_helpers.h"

/*
 * What the packet path reads in place, without a call per packet: the
 * offset of an skb's network header field (nested in a struct group that
 * bindgen names poorly), the offset of preempt_count in x86-64's per-CPU
 * hot data and the bits that count (not the inverted need-resched bit),
 * and the length of a tick (tracking's clock is jiffies_64 in nanoseconds).
 */
enum {
	RNF_SKB_NETWORK_HEADER = offsetof(struct sk_buff, network_header),
#ifdef CONFIG_X86_64
	RNF_PCPU_PREEMPT_COUNT = offsetof(struct pcpu_hot, preempt_count),
	RNF_PREEMPT_COUNT_MASK = PREEMPT_MASK | SOFTIRQ_MASK | HARDIRQ_MASK | NMI_MASK,
#endif
	RNF_TICK_NSEC = TICK_NSEC,
};
