export default function Page() {
  return <h1>stock</h1>;
}
