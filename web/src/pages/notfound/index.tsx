export default function NotFound() {
  return (
    <section class="card" data-testid="not-found">
      <h1>Page not found</h1>
      <p>
        There is nothing at this address. <a href="/">Back to the dashboard</a>
      </p>
    </section>
  );
}
