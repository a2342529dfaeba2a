#ifndef DROVER_CZOOKEEPER_SHIM_H
#define DROVER_CZOOKEEPER_SHIM_H

// The multi-threaded client: without THREADED the header hides the synchronous API and
// declares prototypes that do not match libzookeeper_mt.
#ifndef THREADED
#define THREADED 1
#endif
#include <zookeeper/zookeeper.h>

// The ACL globals are mutable C globals, which Swift 6 rejects as shared mutable state.
// The client only ever reads them, through these accessors.
static inline struct ACL_vector *czk_open_acl_unsafe(void) { return &ZOO_OPEN_ACL_UNSAFE; }
static inline struct ACL_vector *czk_read_acl_unsafe(void) { return &ZOO_READ_ACL_UNSAFE; }
static inline struct ACL_vector *czk_creator_all_acl(void) { return &ZOO_CREATOR_ALL_ACL; }

// A request context travels through the C client as `const void *` and comes back as such;
// these make the intent explicit on the Swift side.
static inline void *czk_mutable(const void *p) { return (void *)p; }

#endif
