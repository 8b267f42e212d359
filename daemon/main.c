/* PLACEHOLDER: postmuxd main, replaced by the supervisor. */
#include <stdio.h>
int main(void) { fprintf(stderr, "postmuxd: not built yet\n"); return 1; }
