/* fs.c — directory helpers shared by the engine, the raft node and the server. */
#include "common/ms.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int ms_mkdir_p(const char *path, ms_err *err)
{
	char *tmp = ms_strdup(path);
	if (!tmp)
		return ms_err_set(err, MS_ENOMEM, "out of memory");
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(tmp, 0700) != 0 && errno != EEXIST) {
			int rc = ms_err_set(err, MS_EIO, "cannot create %s: %s", tmp, strerror(errno));
			ms_free(tmp);
			return rc;
		}
		*p = '/';
	}
	ms_free(tmp);
	if (mkdir(path, 0700) != 0 && errno != EEXIST)
		return ms_err_set(err, MS_EIO, "cannot create %s: %s", path, strerror(errno));
	return 0;
}

void ms_rmtree(const char *path)
{
	DIR *d = opendir(path);
	if (d) {
		struct dirent *de;
		while ((de = readdir(d))) {
			if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
				continue;
			char p[4096];
			snprintf(p, sizeof p, "%s/%s", path, de->d_name);
			if (unlink(p) != 0)
				ms_rmtree(p);
		}
		closedir(d);
	}
	rmdir(path);
}
