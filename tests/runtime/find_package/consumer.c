/* Pure C99 consumer: the header compiles under -Wpedantic, the library links and answers. */
#include <stdio.h>
#include <string.h>

#include "parallax/parallax.h"

int main(void) {
  plx_decode_args a;
  plx_context_options o;
  plx_context* ctx = NULL;
  plx_status s;
  printf("parallax %s\n", plx_version());
  plx_decode_args_init(&a);
  if (a.struct_size != sizeof a) {
    fprintf(stderr, "plx_decode_args_init set struct_size %lu, not %lu\n", (unsigned long)a.struct_size,
            (unsigned long)sizeof a);
    return 1;
  }
  /* No tensors: validation must fail on q with a message naming it. */
  s = plx_decode_validate(&a);
  if (s != PLX_ERROR_INVALID_ARGUMENT || strstr(plx_last_error(), "q:") == NULL) {
    fprintf(stderr, "unexpected validation result %s: %s\n", plx_status_string(s), plx_last_error());
    return 1;
  }
  plx_context_options_init(&o);
  s = plx_context_create(&o, &ctx);
  if (s == PLX_OK) {
    printf("context created\n");
    plx_context_destroy(ctx);
    return 0;
  }
  printf("%s: %s\n", plx_status_string(s), plx_last_error());
  return s == PLX_ERROR_NO_DEVICE ? 0 : 1;
}
