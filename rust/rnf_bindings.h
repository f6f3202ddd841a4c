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
#include <net/genetlink.h>
#include <net/net_namespace.h>
#include <net/netns/generic.h>
#include <uapi/linux/netfilter.h>
#include <uapi/linux/genetlink.h>

#include "rnf_helpers.h"
