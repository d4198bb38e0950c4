/* hdrcheck.c - fmshm.h compiles on its own, included first, with no
 * feature macro defined by the includer (it defines _DEFAULT_SOURCE). */
#include "../fmshm.h"

int main(void)
{
	fmshm r;
	fmshm_entity e;
	(void)e;
	return fmshm_open(&r, "/nonexistent/fmshm") == FMSHM_ESYS ? 0 : 1;
}
