#ifndef DROVER_CSPAWN_H
#define DROVER_CSPAWN_H
#include <spawn.h>

/// Closes every descriptor from `lowest` up in the spawned child (glibc's
/// posix_spawn_file_actions_addclosefrom_np, which Swift does not see: it needs _GNU_SOURCE).
int drover_spawn_addclosefrom(posix_spawn_file_actions_t *actions, int lowest);

#endif
