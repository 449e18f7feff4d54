//! `cargo xtask run NAME [-- ARGS…]`: build the image if it is out of date,
//! then run it in the namespace sandbox as `docker run --rm` would: stdin,
//! stdout and stderr attached, the image's config (image-spec `config.md`)
//! for entrypoint, cmd, env, user and working directory, ports published
//! on the host with `-p` (forwarded into the sandbox's own network
//! namespace, as rootless runtimes' port drivers do), Ctrl-C passed on as
//! the image's stop signal, the program's exit code as this command's own,
//! nothing left behind.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, anyhow};

use super::{Common, Context, Failure};
use crate::build::assemble::oci_platform;
use crate::manifest::User;
use crate::oci::PlatformSpec;
use crate::output::OutputLock;
use crate::testing::{command, service};
use crate::unpack::{self, PlatformImage, UnpackLimits, Unpacked};

/// Exit codes of failures before the program runs, as `docker run` uses them.
const EXIT_SETUP: i32 = 125;
const EXIT_CANNOT_RUN: i32 = 126;
const EXIT_NOT_FOUND: i32 = 127;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Network {
    /// A network namespace of its own with only a loopback interface
    None,
    /// The host's network
    Host,
}

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// The image to run
    #[arg(value_name = "NAME")]
    name: String,
    /// Arguments replacing the image's cmd (after the entrypoint)
    #[arg(last = true, value_name = "ARGS")]
    args: Vec<String>,
    /// The platform to run, e.g. linux/arm64 [default: the host's, else the first]
    #[arg(long, value_name = "OS/ARCH")]
    platform: Option<PlatformSpec>,
    /// Set an environment variable (repeatable), over the image's env
    #[arg(long, short, value_name = "K=V")]
    env: Vec<String>,
    /// Run as UID[:GID] instead of the image's user
    #[arg(long, short, value_name = "UID[:GID]")]
    user: Option<String>,
    /// Stop the program after this many seconds [default: no limit]
    #[arg(long, value_name = "SECS")]
    timeout: Option<f64>,
    /// The program's network
    #[arg(long, value_enum, default_value = "none")]
    network: Network,
    /// Publish a port of the program on the host (repeatable); without an
    /// IP, on every IPv4 interface (0.0.0.0), as `docker run -p`
    #[arg(
        long = "publish",
        short = 'p',
        value_name = "[IP:]HOST_PORT:CONTAINER_PORT[/tcp]"
    )]
    publish: Vec<String>,
    #[command(flatten)]
    common: Common,
}

pub(super) fn run(args: Args) -> Result<(), Failure> {
    let code = run_image(args)?;
    // Everything the run made is gone by now (its values were dropped on
    // return): the exit code is all that is left to pass on.
    if code != 0 {
        let _ = std::io::stdout().flush();
        std::process::exit(code);
    }
    Ok(())
}

/// The program the first SIGINT or SIGTERM is passed to, with its stop
/// signal, once it runs.
type Stoppable = Arc<Mutex<Option<(Arc<sandbox::Running>, i32)>>>;

fn run_image(args: Args) -> Result<i32, Failure> {
    // The first Ctrl-C (or SIGTERM) stops a build, or gives the running
    // program its stop signal and waits for it, as `docker run` does; before
    // the program runs, it stops the sandbox being set up. A second one ends
    // this process at once, and the sandbox with it. No thread has started
    // yet.
    let stoppable: Stoppable = Arc::default();
    let slot = Arc::clone(&stoppable);
    let cancelled = super::on_termination(move |_, _| match lock(&slot).as_ref() {
        Some((running, signal)) => {
            let _ = running.signal(*signal);
        }
        None => sandbox::signals::stop_all(),
    })?;
    let overrides = Overrides::of(&args)?;

    let mut ctx = args.common.load()?;
    // Only the platform that runs is compiled and packed.
    let plan = super::select(&ctx.plan.images, std::slice::from_ref(&args.name))?[0];
    let specs: Vec<PlatformSpec> = plan
        .targets
        .iter()
        .map(|t| oci_platform(t.platform))
        .collect();
    let chosen = choose_platform(&specs, &args.name, args.platform.as_ref())?;
    ctx.keep_platforms(
        std::slice::from_ref(&args.name),
        &[plan.targets[chosen].platform],
    )?;
    let (image, unpacked) = build_and_unpack(&ctx, &args.name, &specs[chosen])?;
    let program = Program::of(&image, &args, overrides)?;
    let emulator = sandbox::emulator_in_dir(&image.platform.architecture, &ctx.env.emulator_dir())
        .with_context(|| format!("running the {} image on this host", image.platform))?;
    let stop = service::stop_signal(&image.config).unwrap_or_else(|e| {
        ctx.shell.warn(format!("{e}; Ctrl-C sends SIGTERM"));
        service::StopSignal {
            number: rustix::process::Signal::TERM.as_raw(),
            name: "SIGTERM",
        }
    });
    let listeners = match listen(&program.publish) {
        Ok(listeners) => listeners,
        Err(e) => {
            error(&ctx, &format!("publishing a port: {e:#}"));
            return Ok(EXIT_SETUP);
        }
    };

    let mut limits = sandbox::Limits {
        // Far enough that no run meets it: `docker run` has no time limit.
        wall_time: program
            .timeout
            .unwrap_or(Duration::from_secs(10 * 365 * 24 * 3600)),
        max_output_bytes: u64::MAX,
        ..command::LIMITS
    };
    if emulator.is_some() && sandbox::cgroup::parent().is_none() {
        limits.memory_bytes = limits.memory_bytes.max(4 << 30);
    }
    if cancelled.load(Ordering::SeqCst) {
        return Err(Failure::Interrupted);
    }
    let sandbox = sandbox::Sandbox::new(unpacked.root())
        .args(&program.argv)
        .env(&program.env)
        .user(program.user.uid, program.user.gid)
        .workdir(&program.workdir)
        .volumes(&program.volumes)
        .limits(limits)
        .emulator(emulator)
        .host_network(args.network == Network::Host)
        .attach_stdio(true);
    let outcome = match sandbox.spawn() {
        Ok(running) => serve(
            &ctx,
            running,
            listeners,
            (&stoppable, stop.number),
            &cancelled,
        ),
        Err(e) => Err(e),
    };
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => return Ok(could_not_run(&ctx, &args.name, &program.argv[0], &e)),
    };
    report_stop(&ctx, &outcome, &limits, &cancelled);
    Ok(match outcome.status {
        sandbox::Status::Exit(code) => code,
        sandbox::Status::Signal(signal) => 128 + signal,
    })
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere while holding this lock leaves nothing half done:
    // it guards a handle.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Waits for the started program, publishing its ports until it ends, with
/// the termination handler able to give it its stop signal meanwhile.
fn serve(
    ctx: &Context,
    running: sandbox::Running,
    listeners: Vec<(TcpListener, u16)>,
    (stoppable, stop_signal): (&Stoppable, i32),
    cancelled: &AtomicBool,
) -> Result<sandbox::Outcome, sandbox::Error> {
    let running = Arc::new(running);
    *lock(stoppable) = Some((Arc::clone(&running), stop_signal));
    // A signal that came as the program started found no program to stop.
    if cancelled.load(Ordering::SeqCst) {
        let _ = running.signal(stop_signal);
    }
    let outcome = std::thread::scope(|scope| {
        for (listener, port) in listeners {
            if let Ok(address) = listener.local_addr() {
                ctx.shell
                    .status("Publishing", format!("{address} -> {port}/tcp"));
            }
            let (running, shell) = (&running, ctx.shell);
            scope.spawn(move || {
                if let Err(e) = running.publish(listener, port) {
                    shell.warn(format!("forwarding to port {port}: {e}"));
                }
            });
        }
        running.wait()
    });
    lock(stoppable).take();
    outcome
}

/// Says why the sandbox stopped the program, when it did.
fn report_stop(
    ctx: &Context,
    outcome: &sandbox::Outcome,
    limits: &sandbox::Limits,
    cancelled: &AtomicBool,
) {
    match outcome.stopped {
        Some(sandbox::StopReason::Timeout) => ctx.shell.warn(format!(
            "stopped: still running after the timeout of {:.1}s",
            limits.wall_time.as_secs_f64()
        )),
        Some(sandbox::StopReason::Memory) => ctx.shell.warn(format!(
            "stopped: went over the memory limit of {} MiB",
            limits.memory_bytes >> 20
        )),
        Some(sandbox::StopReason::Cancelled) if cancelled.load(Ordering::SeqCst) => {
            ctx.shell.warn("interrupted")
        }
        _ => {}
    }
}

/// A port to publish: where on the host, and which port inside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Published {
    host: SocketAddr,
    port: u16,
}

impl Published {
    /// `[IP:]HOST_PORT:CONTAINER_PORT[/tcp]`, as `docker run -p` writes it;
    /// without an IP, every IPv4 interface.
    fn parse(spec: &str) -> Result<Published, String> {
        let form = "the form is [IP:]HOST_PORT:CONTAINER_PORT[/tcp]";
        let (rest, protocol) = spec.rsplit_once('/').unwrap_or((spec, "tcp"));
        if protocol != "tcp" {
            return Err(format!("only tcp ports are published, not `{protocol}`"));
        }
        let (rest, inside) = rest.rsplit_once(':').ok_or(form)?;
        let (ip, host_port) = rest.rsplit_once(':').unwrap_or(("", rest));
        let ip: IpAddr = match ip.trim_start_matches('[').trim_end_matches(']') {
            "" => Ipv4Addr::UNSPECIFIED.into(),
            ip => ip
                .parse()
                .map_err(|_| format!("`{ip}` is not an IP address"))?,
        };
        let port = |p: &str| match p.parse::<u16>() {
            Ok(port) if port > 0 => Ok(port),
            _ => Err(format!("`{p}` is not a port (1 to 65535); {form}")),
        };
        Ok(Published {
            host: SocketAddr::new(ip, port(host_port)?),
            port: port(inside)?,
        })
    }
}

/// A listener on the host for each published port.
fn listen(published: &[Published]) -> anyhow::Result<Vec<(TcpListener, u16)>> {
    published
        .iter()
        .map(|p| {
            let listener =
                TcpListener::bind(p.host).with_context(|| format!("listening on {}", p.host))?;
            Ok((listener, p.port))
        })
        .collect()
}

/// What the command line sets over the image's config, checked before
/// anything is built.
struct Overrides {
    env: Vec<(String, String)>,
    user: Option<User>,
    timeout: Option<Duration>,
    publish: Vec<Published>,
}

impl Overrides {
    fn of(args: &Args) -> Result<Overrides, Failure> {
        let env = args
            .env
            .iter()
            .map(|kv| {
                kv.split_once('=')
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .filter(|(k, _)| !k.is_empty())
                    .ok_or_else(|| Failure::Usage(anyhow!("--env `{kv}` is not KEY=VALUE")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let user = args
            .user
            .as_deref()
            .map(|u| {
                crate::manifest::parse_user(u)
                    .map_err(|_| Failure::Usage(anyhow!("--user `{u}` is not a numeric UID[:GID]")))
            })
            .transpose()?;
        let timeout = match args.timeout {
            Some(t) if t.is_finite() && t > 0.0 && t < 1e9 => Some(Duration::from_secs_f64(t)),
            Some(t) => {
                return Err(Failure::Usage(anyhow!(
                    "--timeout {t} is not a positive number of seconds"
                )));
            }
            None => None,
        };
        let publish = args
            .publish
            .iter()
            .map(|p| Published::parse(p).map_err(|e| Failure::Usage(anyhow!("-p `{p}`: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        if !publish.is_empty() && args.network == Network::Host {
            return Err(Failure::Usage(anyhow!(
                "-p publishes a port of a private network; with --network host the program's \
                 ports are the host's already"
            )));
        }
        Ok(Overrides {
            env,
            user,
            timeout,
            publish,
        })
    }
}

/// Builds image `name` (its plan cut to `platform`), then unpacks that
/// platform's image within the image's `unpack-limits`.
fn build_and_unpack(
    ctx: &Context,
    name: &str,
    platform: &PlatformSpec,
) -> Result<(PlatformImage, Unpacked), Failure> {
    let built = super::build_selected(ctx, &[name.to_owned()])?;
    let built = built
        .into_iter()
        .find(|b| b.name == name)
        .ok_or_else(|| anyhow!("image `{name}` was not built"))?;
    let plan = ctx
        .plan
        .images
        .iter()
        .find(|i| i.name == name)
        .ok_or_else(|| anyhow!("built image `{name}` is not in the plan"))?;
    // Held while the image is read, so another run cannot replace it.
    let lock = OutputLock::acquire(&ctx.out_dir)
        .with_context(|| format!("locking {}", ctx.out_dir.display()))?;
    let images = unpack::read_layout(&built.layout)
        .with_context(|| format!("reading the image layout {}", built.layout.display()))?;
    let image = images
        .into_iter()
        .find(|i| i.platform == *platform)
        .ok_or_else(|| anyhow!("the built image `{name}` has no {platform} image"))?;
    let limits = UnpackLimits::from_keys(&plan.test_settings.unpack_limits);
    let unpacked = unpack::unpack(&built.layout, &image, &limits)
        .with_context(|| format!("unpacking image `{name}` ({})", image.platform))?;
    drop(lock);
    Ok((image, unpacked))
}

/// Which of `platforms` runs: the one asked for; without one, the host's,
/// else the first.
fn choose_platform(
    platforms: &[PlatformSpec],
    name: &str,
    wanted: Option<&PlatformSpec>,
) -> Result<usize, Failure> {
    // The host's own platform is named without a variant: an image that
    // names one runs only when asked for.
    let host = crate::platform::Platform::host().map(|p| PlatformSpec {
        architecture: p.architecture().to_owned(),
        os: p.os().to_owned(),
        variant: None,
    });
    let position = match wanted {
        Some(wanted) => platforms.iter().position(|p| p == wanted),
        None => Some(
            platforms
                .iter()
                .position(|p| Some(p) == host.as_ref())
                .unwrap_or(0),
        ),
    };
    position.filter(|p| *p < platforms.len()).ok_or_else(|| {
        let available: Vec<String> = platforms.iter().map(ToString::to_string).collect();
        Failure::Usage(anyhow!(
            "image `{name}` has no platform {}; it has {}",
            wanted.map(ToString::to_string).unwrap_or_default(),
            available.join(", ")
        ))
    })
}

/// The program as it runs: the image's config with the command line's
/// arguments, variables and user over it.
struct Program {
    argv: Vec<String>,
    env: BTreeMap<String, String>,
    user: User,
    workdir: String,
    volumes: Vec<String>,
    timeout: Option<Duration>,
    publish: Vec<Published>,
}

impl Program {
    fn of(image: &PlatformImage, args: &Args, overrides: Overrides) -> Result<Program, Failure> {
        let config = &image.config;
        let mut argv: Vec<String> = config.config.entrypoint.clone().unwrap_or_default();
        if args.args.is_empty() {
            argv.extend(config.config.cmd.iter().flatten().cloned());
        } else {
            argv.extend(args.args.iter().cloned());
        }
        if argv.is_empty() {
            return Err(Failure::Usage(anyhow!(
                "image `{}` has neither an entrypoint nor a cmd, and no ARGS were given",
                args.name
            )));
        }
        let mut env = command::config_env(config);
        env.extend(overrides.env);
        let user = match overrides.user {
            Some(u) => u,
            None => command::parse_user(config.config.user.as_deref().unwrap_or(""))
                .map_err(|e| Failure::Build(e.into()))?,
        };
        let workdir = config
            .config
            .working_dir
            .clone()
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".to_owned());
        Ok(Program {
            argv,
            env,
            user,
            workdir,
            volumes: command::config_volumes(config),
            timeout: overrides.timeout,
            publish: overrides.publish,
        })
    }
}

/// Reports a sandbox that could not start the program, and gives the exit
/// code `docker run` gives for it.
fn could_not_run(ctx: &Context, name: &str, program: &str, e: &sandbox::Error) -> i32 {
    if let sandbox::Error::Exec(message) = e {
        error(ctx, &format!("cannot run {program}: {message}"));
        let not_found = message.contains("No such file") || message.contains("finding");
        return if not_found {
            EXIT_NOT_FOUND
        } else {
            EXIT_CANNOT_RUN
        };
    }
    let chain = crate::testing::chain(e);
    error(ctx, &format!("running image `{name}`: {chain}"));
    EXIT_SETUP
}

/// An error the run cannot go on from, reported as the command's others are.
fn error(ctx: &Context, message: &str) {
    let label = ctx.shell.paint("error", "1;31");
    eprintln!("{label}: {message}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_ports_are_read_as_docker_writes_them() {
        let p = Published::parse("8080:80").unwrap();
        assert_eq!(p.host, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(p.port, 80);
        let p = Published::parse("127.0.0.1:9000:9000/tcp").unwrap();
        assert_eq!(p.host, "127.0.0.1:9000".parse().unwrap());
        let p = Published::parse("[::1]:9000:90").unwrap();
        assert_eq!((p.host, p.port), ("[::1]:9000".parse().unwrap(), 90));
        for bad in [
            "8080",
            "0:80",
            "8080:70000",
            "1.2.3:80:80",
            "53:53/udp",
            "x:80",
        ] {
            assert!(Published::parse(bad).is_err(), "{bad}");
        }
    }
}
