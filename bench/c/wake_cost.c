/* What waking a sleeping process costs the waker, on this machine: a consumer pinned to CPU 1 sleeps (futex on a
 * /dev/shm page, futex on anonymous shared memory, a pipe read, or a futex wait with a timeout), the producer on
 * CPU 0 lets it sleep IDLE_US microseconds, then times its own wake call (FUTEX_WAKE or a 1-byte write). 3000 rounds;
 * p50 and p90. In a KVM guest with the haltpoll cpuidle driver the answer depends on whether the sleeper's vCPU is
 * still polling (about 0.5 us) or has halted (8-12 us: the wake is an IPI to a halted vCPU), for futexes and pipes
 * alike (docs/benchmarks.md, "Side by side with the peers").
 *   gcc -O2 -o wake_cost bench/c/wake_cost.c && for us in 5 15 30 60; do ./wake_cost 0 $us; ./wake_cost 2 $us; done
 * MODE: 0 futex on a /dev/shm page (as xmem), 1 futex on MAP_SHARED|MAP_ANONYMOUS, 2 pipe, 3 as 0 with a timeout. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <sched.h>
#include <fcntl.h>
#include <time.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <linux/futex.h>
static uint64_t ns(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1000000000ull+t.tv_nsec;}
static void pin(int c){cpu_set_t s;CPU_ZERO(&s);CPU_SET(c,&s);sched_setaffinity(0,sizeof s,&s);}
static int cmp(const void*a,const void*b){uint64_t x=*(uint64_t*)a,y=*(uint64_t*)b;return x<y?-1:x>y;}
#define N 3000
int main(int argc,char**argv){
  if(argc<2){fprintf(stderr,"usage: wake_cost MODE [IDLE_US]\n");return 2;} int mode=atoi(argv[1]); uint64_t idle_ns=(argc>2?strtoull(argv[2],0,10):60)*1000ull; /* 0 futex on /dev/shm file, 1 futex on anon shared, 2 pipe, 3 futex shm with timeout */
  volatile uint32_t *w; int pfd[2]; if(pipe(pfd)){perror("pipe");return 1;}
  if(mode==1){ w=mmap(0,4096,PROT_READ|PROT_WRITE,MAP_SHARED|MAP_ANONYMOUS,-1,0);}
  else { char nm[64]; snprintf(nm,sizeof nm,"/dev/shm/xmem-wake-cost-%d",(int)getpid()); int fd=open(nm,O_RDWR|O_CREAT|O_EXCL,0600); if(fd<0){perror(nm);return 1;} unlink(nm); if(ftruncate(fd,4096)){perror("ftruncate");return 1;} w=mmap(0,4096,PROT_READ|PROT_WRITE,MAP_SHARED,fd,0); }
  *w=0;
  pid_t p=fork();
  if(p==0){ pin(1); char c;
    for(uint32_t i=1;i<=N;i++){
      if(mode==2){ read(pfd[0],&c,1);} else {
        uint32_t v; while((v=__atomic_load_n(w,__ATOMIC_ACQUIRE))<i){ struct timespec ts={0,100000000};
          syscall(SYS_futex,w,FUTEX_WAIT,v,mode==3?&ts:NULL,0,0);} }
    } _exit(0);}
  pin(0); uint64_t d[N];
  for(uint32_t i=1;i<=N;i++){ uint64_t t=ns(); while(ns()-t<idle_ns) { } /* let it sleep */
    uint64_t t0=ns();
    if(mode==2){ write(pfd[1],"x",1);} else { __atomic_store_n(w,i,__ATOMIC_RELEASE); syscall(SYS_futex,w,FUTEX_WAKE,0x7fffffff,0,0,0);}
    d[i-1]=ns()-t0; }
  waitpid(p,0,0); qsort(d,N,8,cmp);
  printf("mode %d, idle %llu us: waker cost p50 %.2f us p90 %.2f\n",mode,(unsigned long long)(idle_ns/1000),d[N/2]/1000.0,d[N*9/10]/1000.0);
}
