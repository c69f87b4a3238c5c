//! `sluice serve`: open the data dir, start the Kafka and HTTP listeners, run until Ctrl-C or
//! SIGTERM, then finish in-flight requests and close every partition cleanly.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::broker::{now_ms, Broker};
use crate::catalog::Catalog;
use crate::config::{BrokerConfig, LogFormat, Overrides, SecurityProtocol};
use crate::connect::Connect;
use crate::group::GroupCoordinator;
use crate::meta::{write_atomically, MetaDir};
use crate::producer_ids::ProducerIds;

/// How often transform progress is checkpointed (see `transform::progress`).
const PROGRESS_CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
use crate::protocol::session::ListenerContext;

/// How often keystore and truststore files are checked for changes.
const TLS_RELOAD_INTERVAL: Duration = Duration::from_secs(2);

pub(super) fn serve(config_file: Option<&Path>, overrides: Overrides) -> anyhow::Result<()> {
    let config = BrokerConfig::load(config_file, overrides)?;
    init_tracing(config.log_format);
    crate::metrics::set_enabled(config.metrics_enabled);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sluice")
        .build()
        .context("cannot start the async runtime")?
        .block_on(run(config))
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn run(config: BrokerConfig) -> anyhow::Result<()> {
    let meta_dir = MetaDir::of(&config.data_dir);
    meta_dir
        .create()
        .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
    let meta = meta_dir.root().to_path_buf();
    // Two brokers on one data dir would interleave writes; the lock is released when the process
    // ends, however it ends.
    let lock = std::fs::File::create(meta_dir.lock())?;
    lock.try_lock().map_err(|_| {
        anyhow::anyhow!(
            "data dir {} is in use by another sluice process",
            config.data_dir.display()
        )
    })?;
    let cluster_id = cluster_id(&meta_dir)?;
    let producer_ids = ProducerIds::open(&meta_dir.producer_ids())?;
    let groups = Arc::new(
        GroupCoordinator::open(&meta, config.groups)
            .with_context(|| format!("cannot open committed offsets in {}", meta.display()))?,
    );
    let transactions =
        crate::txn::TransactionCoordinator::open(&meta_dir.transactions(), config.transactions)
            .with_context(|| format!("cannot open the transaction log in {}", meta.display()))?;
    let wasm = crate::wasm::WasmEngine::new()
        .map_err(|e| anyhow::anyhow!("cannot start the wasm engine: {e}"))?;
    let transforms = crate::transform::TransformRegistry::open(
        &meta_dir,
        wasm,
        crate::wasm::GuestLimits::default(),
    )
    .with_context(|| format!("cannot load transforms from {}", meta.display()))?;
    let started = std::time::Instant::now();
    let catalog = Catalog::open(config.data_dir.clone(), config.topics.clone())
        .with_context(|| format!("cannot open data dir {}", config.data_dir.display()))?;
    tracing::info!(
        topics = catalog.list().len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "log loaded"
    );

    let credentials = Arc::new(
        crate::auth::credentials::CredentialStore::open(&meta)
            .with_context(|| format!("cannot load SCRAM credentials from {}", meta.display()))?,
    );
    let quotas = crate::quota::QuotaStore::open(&meta)
        .with_context(|| format!("cannot load client quotas from {}", meta.display()))?;
    let authorizer = crate::acl::Authorizer::open(&meta_dir.acls(), &config.authorizer)
        .with_context(|| format!("cannot load ACLs from {}", meta.display()))?;
    if authorizer.is_enabled() {
        tracing::info!(
            acls = authorizer.store().with(|b| b.len()),
            super_users = ?config.authorizer.super_users,
            "ACLs enforced"
        );
    }
    let listener_configs = config.resolve_listeners()?;
    // One authenticator and one TLS config per distinct settings (listeners without
    // `listener.name.*` overrides share them, and with them the failure counts and reloads).
    let mut authenticators: Vec<(crate::auth::SaslSettings, Arc<crate::auth::Authenticator>)> =
        Vec::new();
    let mut tls_servers: Vec<(
        crate::auth::tls::TlsSettings,
        Arc<crate::auth::tls::TlsServer>,
    )> = Vec::new();
    for l in &listener_configs {
        if l.protocol.uses_sasl() && !authenticators.iter().any(|(s, _)| *s == l.sasl) {
            let authenticator = crate::auth::Authenticator::new(credentials.clone(), &l.sasl)
                .map_err(|e| anyhow::anyhow!("listener {}: {e}", l.name))?;
            authenticators.push((l.sasl.clone(), Arc::new(authenticator)));
        }
        if l.protocol.uses_tls() && !tls_servers.iter().any(|(s, _)| *s == l.tls) {
            let tls = crate::auth::tls::TlsServer::load(l.tls.clone())
                .map_err(|e| anyhow::anyhow!("listener {}: TLS: {e}", l.name))?;
            tls_servers.push((l.tls.clone(), Arc::new(tls)));
        }
    }
    let mut listeners = Vec::new();
    for l in &listener_configs {
        let tcp = TcpListener::bind(l.bind)
            .await
            .with_context(|| format!("cannot listen on {} (listener {})", l.bind, l.name))?;
        let bound = tcp.local_addr()?;
        let (advertised_host, advertised_port) = match &l.advertised {
            Some((host, port)) => (host.clone(), *port),
            None => (config.advertised_host_for(bound), bound.port()),
        };
        let context = Arc::new(ListenerContext {
            name: l.name.clone(),
            protocol: l.protocol,
            advertised_host,
            advertised_port: i32::from(advertised_port),
            authenticator: authenticators
                .iter()
                .find(|(s, _)| l.protocol.uses_sasl() && *s == l.sasl)
                .map(|(_, a)| a.clone()),
        });
        listeners.push(crate::server::Listener {
            tcp,
            context,
            tls: tls_servers
                .iter()
                .find(|(s, _)| l.protocol.uses_tls() && *s == l.tls)
                .map(|(_, t)| t.clone()),
        });
    }
    let http = TcpListener::bind(config.http_listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.http_listen))?;
    let kafka_addr = listeners[0].tcp.local_addr()?;
    let http_addr = http.local_addr()?;
    let cluster = join_cluster(
        &config,
        &listeners[0].context.advertised_host,
        listeners[0].context.advertised_port,
    )
    .await?;
    // In cluster mode every broker answers the cluster's one id, not its data dir's.
    let cluster_id = match &cluster {
        Some(c) => {
            c.db.cluster_id(&cluster_id)
                .await
                .context("cannot read the cluster id from the metadata database")?
        }
        None => cluster_id,
    };
    let broker = Arc::new(Broker {
        catalog,
        node_id: cluster.as_ref().map_or(1, |c| c.node_id()),
        cluster_id,
        advertised_host: listeners[0].context.advertised_host.clone(),
        advertised_port: listeners[0].context.advertised_port,
        producer_ids,
        groups: groups.clone(),
        transforms,
        guests: crate::wasm::GuestPool::sized_to_machine(),
        credentials,
        transactions,
        quotas: crate::quota::Quotas::new(quotas, config.quota_window),
        authorizer,
        cluster: cluster.clone(),
    });
    let connect = Arc::new(match &cluster {
        // The cluster's connectors, in its database; this broker's worker id is its REST
        // address.
        Some(c) => Connect::in_cluster(
            &meta_dir,
            c.clone(),
            format!("{}:{}", broker.advertised_host, http_addr.port()),
        ),
        None => Connect::open(&meta_dir)
            .with_context(|| format!("cannot load connectors from {}", meta.display()))?,
    });

    // Transforms a crash interrupted are completed before any client is served.
    {
        let b = broker.clone();
        broker
            .guests
            .run(move || crate::write::recover(&b))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    // Transactions a crash interrupted after their end was decided get their markers now, so
    // every partition of each ends the same way before clients read.
    crate::txn_markers::complete_due(&broker).await;
    crate::write::spawn_backfills(&broker);
    connect.start_all(&broker);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut cluster_tasks = cluster
        .as_ref()
        .map(|c| c.spawn_tasks(stop_rx.clone()))
        .unwrap_or_default();
    let mut maintenance = None;
    if let (Some(c), Some(cluster_config)) = (&cluster, &config.cluster) {
        // Groups are coordinated under leases in the cluster from the first request on.
        cluster_tasks.push(crate::cluster::groups::start(
            c,
            &broker.groups,
            stop_rx.clone(),
        ));
        // Transform deployments are the cluster's: applied here before clients are served,
        // then kept in step with every change.
        cluster_tasks.push(
            crate::cluster::deployments::start(broker.clone(), c.clone(), stop_rx.clone()).await,
        );
        // Connectors are the cluster's; each task runs on the broker holding its lease.
        cluster_tasks.push(crate::connect::leases::spawn(
            connect.clone(),
            broker.clone(),
            stop_rx.clone(),
        ));
        // Retention, collection and merging run on whichever broker holds the maintenance
        // lease; every broker competes for it, so it moves when its holder dies.
        let mut settings = crate::cluster::maintenance::Settings::new(
            std::time::Duration::from_millis(cluster_config.maintenance_interval_ms),
            crate::cluster::node::UPLOAD_PREFIX.to_string(),
        );
        let log = &config.topics.log;
        settings.retention = crate::cluster::db::maintenance::RetentionPolicy {
            ms: (log.retention_ms >= 0).then_some(log.retention_ms),
            bytes: (log.retention_bytes >= 0).then_some(log.retention_bytes),
        };
        let lease: crate::cluster::types::LeaseSource = {
            let c = c.clone();
            Arc::new(move || c.lease())
        };
        maintenance = Some(crate::cluster::maintenance::spawn(
            c.db.clone(),
            c.objects.clone(),
            lease,
            settings,
        ));
    }
    // Beyond the default single listener, the stdout line names every listener.
    let extra_field =
        if listeners.len() > 1 || listeners[0].context.protocol != SecurityProtocol::Plaintext {
            let mut names = Vec::new();
            for l in &listeners {
                names.push(format!("{}://{}", l.context.name, l.tcp.local_addr()?));
            }
            format!(" listeners={}", names.join(","))
        } else {
            String::new()
        };
    let limits = crate::server::Limits {
        max_request_bytes: config.max_request_bytes,
        connections: crate::quota::limits::ConnectionLimits::new(config.connection_limits.clone()),
        queued: crate::quota::limits::QueuedBytes::new(config.queued_max_request_bytes),
    };
    let kafka_tasks: Vec<_> = listeners
        .into_iter()
        .map(|listener| {
            tokio::spawn(crate::server::run(
                listener,
                broker.clone(),
                limits.clone(),
                stop_rx.clone(),
            ))
        })
        .collect();
    // HTTPS shares a Kafka listener's TLS config (and its reloads) when the settings are equal.
    let http_tls = if config.http.tls {
        let settings = config.http_tls()?;
        match tls_servers.iter().find(|(s, _)| *s == settings) {
            Some((_, tls)) => Some(tls.clone()),
            None => {
                let tls = Arc::new(
                    crate::auth::tls::TlsServer::load(settings.clone())
                        .map_err(|e| anyhow::anyhow!("HTTP listener: TLS: {e}"))?,
                );
                tls_servers.push((settings, tls.clone()));
                Some(tls)
            }
        }
    } else {
        None
    };
    let tls_watches: Vec<_> = tls_servers
        .into_iter()
        .map(|(_, tls)| tokio::spawn(tls.watch(TLS_RELOAD_INTERVAL, stop_rx.clone())))
        .collect();
    let http_task = tokio::spawn(crate::http::run(
        http,
        crate::http::AppState {
            broker: broker.clone(),
            connect: connect.clone(),
        },
        config.http.clone(),
        http_tls.clone(),
        stop_rx.clone(),
    ));
    let checkpoints = tokio::spawn(checkpoint_loop(broker.clone(), stop_rx.clone()));
    let group_timers = tokio::spawn(crate::group::run_timers(groups, stop_rx.clone()));
    let txn_timeouts = tokio::spawn(crate::txn_markers::run_timeouts(
        broker.clone(),
        stop_rx.clone(),
    ));
    let retention_task = tokio::spawn(retention_loop(
        broker.clone(),
        Duration::from_millis(config.retention_check_interval_ms),
        stop_rx.clone(),
    ));
    let cleaner = {
        let broker = broker.clone();
        crate::log::cleaner::LogCleaner::start(
            config.cleaner.clone(),
            Arc::new(move || {
                broker
                    .catalog
                    .list()
                    .iter()
                    .flat_map(|t| t.partitions())
                    .collect()
            }),
            now_ms,
        )
        .context("cannot start the log cleaner")?
    };
    tracing::info!(kafka = %kafka_addr, http = %http_addr, data_dir = %config.data_dir.display(), "sluice started");
    let stop = stop_signals();
    // The one line on stdout: tests and scripts read the bound ports from it.
    {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "sluice listening kafka={kafka_addr} http={http_addr}{extra_field}"
        )?;
        out.flush()?;
    }

    stop.await;
    tracing::info!("shutting down: finishing in-flight requests");
    let _ = stop_tx.send(true);
    for task in kafka_tasks {
        let _ = task.await;
    }
    if let Some(m) = maintenance {
        m.stop().await;
    }
    if let Some(cluster) = &cluster {
        // Tasks stop here before their leases go with the registration, so a task never runs
        // on two brokers at once.
        connect.leave().await;
        // What producers are waiting for is committed before the registration goes.
        cluster.leave().await;
    }
    for task in cluster_tasks {
        let _ = task.await;
    }
    for task in tls_watches {
        let _ = task.await;
    }
    match http_task.await {
        Ok(Err(e)) => tracing::warn!("http listener: {e}"),
        Err(e) => tracing::warn!("http listener: {e}"),
        Ok(Ok(())) => {}
    }
    let _ = retention_task.await;
    // Cleanings in progress are abandoned (the log keeps its old segments) before the close.
    tokio::task::spawn_blocking(move || cleaner.shutdown()).await?;
    let _ = group_timers.await;
    let _ = txn_timeouts.await;
    let _ = checkpoints.await;
    connect.stop_all();
    let closing = broker.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        closing
            .transforms
            .checkpoint()
            .context("cannot save transform progress")?;
        closing.catalog.close();
        Ok(())
    })
    .await??;
    tracing::info!("shutdown complete");
    drop(lock);
    Ok(())
}

/// Joins the cluster when `--metadata` is given: connects (migrating the schema), registers
/// this broker as `host:port`.
async fn join_cluster(
    config: &BrokerConfig,
    host: &str,
    port: i32,
) -> anyhow::Result<Option<Arc<crate::cluster::node::Cluster>>> {
    let Some(cluster) = &config.cluster else {
        return Ok(None);
    };
    let settings = crate::cluster::node::Settings {
        advertised_host: host.to_string(),
        advertised_port: port,
        rack: cluster.rack.clone(),
        lease: Duration::from_millis(cluster.lease_ms),
        upload: crate::cluster::upload::Settings::new(
            Duration::from_millis(cluster.upload_linger_ms),
            cluster.upload_max_bytes,
        ),
        topics: config.topics.clone(),
    };
    let cluster = crate::cluster::node::Cluster::join(cluster, settings)
        .await
        .context("cannot join the cluster")?;
    Ok(Some(cluster))
}

/// The cluster id, made once and kept in the data dir (clients compare it across reconnects).
fn cluster_id(meta: &MetaDir) -> anyhow::Result<String> {
    let path = meta.cluster_id();
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_string()),
        Ok(_) => anyhow::bail!("{} is empty", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = uuid::Uuid::new_v4().simple().to_string();
            write_atomically(&path, id.as_bytes())?;
            Ok(id)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Ctrl-C and SIGTERM, listened for from the moment this is called: it is called before the
/// startup line is printed, so a signal sent as soon as the line is read stops the broker cleanly
/// instead of killing it with the default action.
fn stop_signals() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                _ => {
                    tracing::warn!("cannot listen for SIGTERM and SIGINT; waiting for Ctrl-C only");
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Checkpoints transform progress every [`PROGRESS_CHECKPOINT_EVERY`] while it changes.
async fn checkpoint_loop(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(PROGRESS_CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let b = broker.clone();
        match tokio::task::spawn_blocking(move || b.transforms.checkpoint()).await {
            Ok(Err(e)) => tracing::warn!("cannot save transform progress: {e}"),
            Err(e) => tracing::warn!("transform progress checkpoint failed: {e}"),
            Ok(Ok(())) => {}
        }
    }
}

/// Applies `retention.ms` / `retention.bytes` every `log.retention.check.interval.ms`.
async fn retention_loop(broker: Arc<Broker>, every: Duration, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let broker = broker.clone();
        let _ =
            tokio::task::spawn_blocking(move || broker.catalog.enforce_retention(now_ms())).await;
    }
}
