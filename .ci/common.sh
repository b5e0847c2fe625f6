# Shared by the .ci scripts: phase banners with wall-clock timing. Source it; don't run it.
phase_start=0
phase() {
    phase_start=$(date +%s)
    echo "==> [$(date -u +%H:%M:%S)] $*"
}
phase_done() {
    echo "<== done in $(($(date +%s) - phase_start))s"
}
