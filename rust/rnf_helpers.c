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
#include <linux/netdevice.h>
#include <linux/netfilter.h>
#include <linux/random.h>
#include <linux/timekeeping.h>
#include <net/sock.h>
#include <net/netfilter/ipv4/nf_reject.h>
#include <net/netfilter/ipv6/nf_reject.h>
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

/* NL_SET_ERR_MSG_FMT's buffer, for messages that name what is wrong. */
void rnf_extack_set_msg_copy(struct genl_info *info, const char *msg)
{
	struct netlink_ext_ack *extack = info->extack;

	if (!extack)
		return;
	strscpy(extack->_msg_buf, msg, sizeof(extack->_msg_buf));
	extack->_msg = extack->_msg_buf;
}

struct genl_info *rnf_dump_info(struct netlink_callback *cb)
{
	/* genl_dumpit_info() is const only to discourage writes; rnf reads. */
	return (struct genl_info *)&genl_dumpit_info(cb)->info;
}

long *rnf_dump_args(struct netlink_callback *cb)
{
	return cb->args;
}

void rnf_dump_set_min_alloc(struct netlink_callback *cb, u32 size)
{
	cb->min_dump_alloc = min_t(u32, size, U16_MAX);
}

int rnf_dump_put(struct sk_buff *skb, struct netlink_callback *cb,
		 const void *family, u8 cmd, const void *payload, u32 len)
{
	void *hdr;

	hdr = genlmsg_put(skb, NETLINK_CB(cb->skb).portid, cb->nlh->nlmsg_seq,
			  family, NLM_F_MULTI, cmd);
	if (!hdr)
		return -EMSGSIZE;
	if (skb_tailroom(skb) < (int)len) {
		genlmsg_cancel(skb, hdr);
		return -EMSGSIZE;
	}
	skb_put_data(skb, payload, len);
	genlmsg_end(skb, hdr);
	return 0;
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

int rnf_skb_copy_network(const struct sk_buff *skb, unsigned int offset,
			 void *to, unsigned int len)
{
	int noff = skb_network_offset(skb);
	unsigned int avail = skb->len - noff;

	if (offset >= avail)
		return 0;
	len = min(len, avail - offset);
	if (skb_copy_bits(skb, noff + offset, to, len))
		return -EFAULT;
	return len;
}

unsigned int rnf_skb_network_len(const struct sk_buff *skb)
{
	return skb->len - skb_network_offset(skb);
}

u32 rnf_skb_mark(const struct sk_buff *skb)
{
	return skb->mark;
}

void rnf_skb_set_mark(struct sk_buff *skb, u32 mark)
{
	skb->mark = mark;
}

unsigned int rnf_dev_name(const struct net_device *dev, char *buf,
			  unsigned int len)
{
	if (!dev || !len)
		return 0;
	return strscpy(buf, dev->name, min_t(unsigned int, len, IFNAMSIZ)) < 0 ?
		       0 : strnlen(buf, len);
}

/* The owner of a locally generated packet's socket, as xt_owner sees it:
 * the opening file's fsuid/fsgid, in the namespace's user namespace. */
bool rnf_skb_owner(const struct sk_buff *skb, const struct net *net,
		   u32 *uid, u32 *gid)
{
	const struct sock *sk = skb_to_full_sk(skb);
	const struct file *filp;

	if (!sk || !sk->sk_socket || !net_eq(net, sock_net(sk)))
		return false;
	filp = sk->sk_socket->file;
	if (!filp)
		return false;
	*uid = from_kuid_munged(net->user_ns, filp->f_cred->fsuid);
	*gid = from_kgid_munged(net->user_ns, filp->f_cred->fsgid);
	return true;
}

void rnf_log(u8 level, const char *msg)
{
	if (level > 7)
		level = 4;
	if (net_ratelimit())
		printk("%c%c%s\n", KERN_SOH_ASCII, '0' + level, msg);
}

/* rules::RejectKind -> ICMP code / ICMPv6 code. */
void rnf_reject(struct sk_buff *skb, const struct nf_hook_state *state,
		u8 kind)
{
	static const u8 icmp4[] = {
		ICMP_PORT_UNREACH, 0, ICMP_NET_UNREACH, ICMP_HOST_UNREACH,
		ICMP_PROT_UNREACH, ICMP_NET_ANO, ICMP_HOST_ANO, ICMP_PKT_FILTERED,
	};
	static const u8 icmp6[] = {
		ICMPV6_PORT_UNREACH, 0, ICMPV6_NOROUTE, ICMPV6_ADDR_UNREACH,
		ICMPV6_PORT_UNREACH, ICMPV6_ADM_PROHIBITED, ICMPV6_ADM_PROHIBITED,
		ICMPV6_ADM_PROHIBITED,
	};

	if (kind >= ARRAY_SIZE(icmp4))
		kind = 0;
	switch (state->pf) {
	case NFPROTO_IPV4:
		if (kind == 1)
			nf_send_reset(state->net, state->sk, skb, state->hook);
		else
			nf_send_unreach(skb, icmp4[kind], state->hook);
		break;
	case NFPROTO_IPV6:
		if (kind == 1)
			nf_send_reset6(state->net, state->sk, skb, state->hook);
		else
			nf_send_unreach6(state->net, skb, icmp6[kind], state->hook);
		break;
	}
}

u64 rnf_now_ns(void)
{
	return ktime_get_mono_fast_ns();
}

u32 rnf_random_u32(void)
{
	return get_random_u32();
}

void rnf_synchronize_rcu(void)
{
	synchronize_rcu();
}

void rnf_rcu_read_lock(void)
{
	rcu_read_lock();
}

void rnf_rcu_read_unlock(void)
{
	rcu_read_unlock();
}

int rnf_skb_add_page_frag(struct sk_buff *skb, const void *data,
			  unsigned int len)
{
	struct page *page;

	if (len > PAGE_SIZE || skb_shinfo(skb)->nr_frags >= MAX_SKB_FRAGS)
		return -EINVAL;
	page = alloc_page(GFP_KERNEL);
	if (!page)
		return -ENOMEM;
	memcpy(page_address(page), data, len);
	skb_add_rx_frag(skb, skb_shinfo(skb)->nr_frags, page, 0, len, PAGE_SIZE);
	return 0;
}

void rnf_kunit_fail(const char *file, u32 line, const char *msg)
{
	kunit_fail_current_test("%s:%u: %s", file, line, msg);
}
